"""Translation between a client's wire API and a different upstream API.

A client speaks one API and the tier chosen for it may speak another:
Claude Code speaks Anthropic Messages, Cursor OpenAI Chat Completions,
Codex OpenAI Responses, and Ollama, llama.cpp and LM Studio speak Chat
Completions only, and the bedrock_converse provider speaks Bedrock
Converse only. Each direct pair has a subpackage named for the client
API and the upstream API:

    anthropic_to_chat   Anthropic Messages client, Chat Completions upstream
    chat_to_anthropic   Chat Completions client, Anthropic Messages upstream
    chat_to_converse    Chat Completions client, Bedrock Converse upstream
    responses_to_chat   Responses client, Chat Completions upstream

A client API with a translation into Chat Completions also reaches every
upstream API that has a translation from Chat Completions, through both
(see composed.py). That adds Anthropic Messages and Responses clients on
Bedrock Converse upstreams, and Responses clients on Anthropic Messages
upstreams.

Every module here is pure: no I/O, and no clock or random id except the
ones a caller may inject. `translation_for` returns a new object per
request, because `request` records what the response and stream
translations need.

FIELD_RULES lists, per pair, each client field that the upstream API
lacks and whether it is dropped, sent in a changed form, or rejected
with InvalidRequestError. Fields not listed are translated. A composed
pair has the rules of both of its translations, and the fields of the
second one's rules, marked "(Chat Completions step)", are those of the
chat request between the two.
"""

from __future__ import annotations

from collections.abc import Callable

from . import anthropic_to_chat, chat_to_anthropic, chat_to_converse, responses_to_chat
from ._common import FieldRule
from .base import StreamTranslator, Translation
from .composed import CHAT_API, ComposedTranslation, composed_rules

__all__ = [
    "FIELD_RULES",
    "SUPPORTED_PAIRS",
    "FieldRule",
    "StreamTranslator",
    "Translation",
    "translation_for",
]

Pair = tuple[str, str]

_DIRECT: dict[Pair, tuple[Callable[[], Translation], tuple[FieldRule, ...]]] = {
    ("anthropic_messages", CHAT_API): (
        anthropic_to_chat.AnthropicToChat,
        anthropic_to_chat.FIELD_RULES,
    ),
    (CHAT_API, "anthropic_messages"): (
        chat_to_anthropic.ChatToAnthropic,
        chat_to_anthropic.FIELD_RULES,
    ),
    (CHAT_API, "bedrock_converse"): (
        chat_to_converse.ChatToConverse,
        chat_to_converse.FIELD_RULES,
    ),
    ("openai_responses", CHAT_API): (
        responses_to_chat.ResponsesToChat,
        responses_to_chat.FIELD_RULES,
    ),
}


def _composed_pairs() -> dict[Pair, tuple[Pair, Pair]]:
    """Return each pair that two direct pairs join into, with those two."""
    pairs: dict[Pair, tuple[Pair, Pair]] = {}
    for outer in _DIRECT:
        for inner in _DIRECT:
            client, upstream = outer[0], inner[1]
            joined = outer[1] == CHAT_API and inner[0] == CHAT_API
            if joined and client != upstream and (client, upstream) not in _DIRECT:
                pairs[(client, upstream)] = (outer, inner)
    return pairs


_COMPOSED = _composed_pairs()

SUPPORTED_PAIRS: frozenset[Pair] = frozenset(_DIRECT) | frozenset(_COMPOSED)
"""(client_api, upstream_api) pairs that translation_for accepts."""

FIELD_RULES: dict[Pair, tuple[FieldRule, ...]] = {
    **{pair: rules for pair, (_, rules) in _DIRECT.items()},
    **{
        pair: composed_rules(_DIRECT[outer][1], _DIRECT[inner][1])
        for pair, (outer, inner) in _COMPOSED.items()
    },
}


def translation_for(client_api: str, upstream_api: str) -> Translation | None:
    """Return a new translation for one request, or None when the APIs match.

    Raises ValueError for a pair outside SUPPORTED_PAIRS, which config
    validation should catch first.
    """
    if client_api == upstream_api:
        return None
    pair = (client_api, upstream_api)
    if pair in _DIRECT:
        return _DIRECT[pair][0]()
    if pair in _COMPOSED:
        outer, inner = _COMPOSED[pair]
        return ComposedTranslation(_DIRECT[outer][0](), _DIRECT[inner][0]())
    supported = ", ".join(f"{c} -> {u}" for c, u in sorted(SUPPORTED_PAIRS))
    raise ValueError(
        f"no translation from {client_api!r} clients to {upstream_api!r} "
        f"upstreams. Supported pairs: {supported}"
    )
