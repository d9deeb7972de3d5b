"""Translation between a client's wire API and a different upstream API.

A client speaks one API and the tier chosen for it may speak another:
Claude Code speaks Anthropic Messages, Cursor OpenAI Chat Completions,
Codex OpenAI Responses, and Ollama, llama.cpp and LM Studio speak Chat
Completions only, and the bedrock_converse provider speaks Bedrock
Converse only. Each supported pair has a subpackage named for the
client API and the upstream API:

    anthropic_to_chat   Anthropic Messages client, Chat Completions upstream
    chat_to_anthropic   Chat Completions client, Anthropic Messages upstream
    chat_to_converse    Chat Completions client, Bedrock Converse upstream
    responses_to_chat   Responses client, Chat Completions upstream

Every module here is pure: no I/O, and no clock or random id except the
ones a caller may inject. `translation_for` returns a new object per
request, because `request` records what the response and stream
translations need.

FIELD_RULES lists, per pair, each client field that the upstream API
lacks and whether it is dropped, sent in a changed form, or rejected
with InvalidRequestError. Fields not listed are translated.
"""

from __future__ import annotations

from collections.abc import Callable

from . import anthropic_to_chat, chat_to_anthropic, chat_to_converse, responses_to_chat
from ._common import FieldRule
from .base import StreamTranslator, Translation

__all__ = [
    "FIELD_RULES",
    "SUPPORTED_PAIRS",
    "FieldRule",
    "StreamTranslator",
    "Translation",
    "translation_for",
]

_FACTORIES: dict[tuple[str, str], Callable[[], Translation]] = {
    ("anthropic_messages", "openai_chat"): anthropic_to_chat.AnthropicToChat,
    ("openai_chat", "anthropic_messages"): chat_to_anthropic.ChatToAnthropic,
    ("openai_chat", "bedrock_converse"): chat_to_converse.ChatToConverse,
    ("openai_responses", "openai_chat"): responses_to_chat.ResponsesToChat,
}

SUPPORTED_PAIRS: frozenset[tuple[str, str]] = frozenset(_FACTORIES)
"""(client_api, upstream_api) pairs that translation_for accepts."""

FIELD_RULES: dict[tuple[str, str], tuple[FieldRule, ...]] = {
    ("anthropic_messages", "openai_chat"): anthropic_to_chat.FIELD_RULES,
    ("openai_chat", "anthropic_messages"): chat_to_anthropic.FIELD_RULES,
    ("openai_chat", "bedrock_converse"): chat_to_converse.FIELD_RULES,
    ("openai_responses", "openai_chat"): responses_to_chat.FIELD_RULES,
}


def translation_for(client_api: str, upstream_api: str) -> Translation | None:
    """Return a new translation for one request, or None when the APIs match.

    Raises ValueError for a pair outside SUPPORTED_PAIRS, which config
    validation should catch first.
    """
    if client_api == upstream_api:
        return None
    factory = _FACTORIES.get((client_api, upstream_api))
    if factory is None:
        supported = ", ".join(f"{c} -> {u}" for c, u in sorted(SUPPORTED_PAIRS))
        raise ValueError(
            f"no translation from {client_api!r} clients to {upstream_api!r} "
            f"upstreams. Supported pairs: {supported}"
        )
    return factory()
