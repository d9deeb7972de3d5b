"""Translations through Chat Completions, for pairs with no direct translation.

Two translations that meet at OpenAI Chat Completions join into one: the
outer one turns the client's API into chat, the inner one turns chat
into the upstream's API. Claude Code on a Bedrock Converse tier, for
example, runs anthropic_to_chat and then chat_to_converse.

Requests go through the outer translation, then the inner one. Responses
and errors come back through the inner one, then the outer one. In a
stream, the chat chunks that the inner translator returns are decoded
again with SSEDecoder and fed to the outer translator. Every stream
translator returns whole events only, so no partial event is left in
the decoder between calls.

The outer translations of Anthropic Messages and Responses requests set
stream_options.include_usage, so the inner translator sends the usage
chunk from which the outer one takes the client's counts. Chat carries
no cache-write count, so Converse's cacheWriteInputTokens reach an
Anthropic client as input_tokens. Spend is metered from the upstream's
own events and is exact either way.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError
from ..sse import Event, SSEDecoder
from ._common import FieldRule
from .base import StreamTranslator, Translation

CHAT_API = "openai_chat"
STEP_MARK = " (Chat Completions step)"
"""Appended to the fields of the inner translation's rules: those fields
are the ones that the outer translation wrote into the chat request."""


class ComposedTranslation:
    """Serves a client through an outer and an inner translation that meet at chat."""

    def __init__(self, outer: Translation, inner: Translation) -> None:
        if outer.upstream_api != CHAT_API or inner.client_api != CHAT_API:
            raise ValueError(
                f"translations {outer.client_api} -> {outer.upstream_api} and "
                f"{inner.client_api} -> {inner.upstream_api} do not meet at {CHAT_API}"
            )
        self.outer = outer
        self.inner = inner
        self.client_api = outer.client_api
        self.upstream_api = inner.upstream_api
        self.upstream_path = inner.upstream_path

    def request(self, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        """Translate a client request into chat, then into the upstream's API.

        An error of the inner translation names a field of the chat
        request, so its message is prefixed to state that.
        """
        chat = self.outer.request(body, model=model)
        try:
            return self.inner.request(chat, model=model)
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"In the request translated to Chat Completions, {exc.message}"
            ) from exc

    def response(self, document: dict[str, Any]) -> dict[str, Any]:
        return self.outer.response(self.inner.response(document))

    def error(self, status: int, document: object) -> dict[str, Any]:
        return self.outer.error(status, self.inner.error(status, document))

    def stream(self) -> ComposedStream:
        # The outer translation reads the client's counts from the chat usage
        # chunk, so the inner one sends that chunk even when the chat request
        # did not set stream_options.include_usage.
        if hasattr(self.inner, "include_usage"):
            self.inner.include_usage = True
        return ComposedStream(outer=self.outer.stream(), inner=self.inner.stream())


class ComposedStream:
    """Feeds the chat chunks of an inner stream translator to an outer one."""

    def __init__(self, *, outer: StreamTranslator, inner: StreamTranslator) -> None:
        self._outer = outer
        self._inner = inner
        self._decoder = SSEDecoder()

    def feed(self, event: Event) -> bytes:
        return self._relay(self._inner.feed(event))

    def finish(self, *, error: str | None = None) -> bytes:
        """End both streams: the inner one's last chunks reach the outer one first.

        An inner error chunk ends the outer stream with that error, and
        the outer `finish` then returns b"".
        """
        out = self._relay(self._inner.finish(error=error))
        return out + self._outer.finish(error=error)

    def _relay(self, chat_bytes: bytes) -> bytes:
        if not chat_bytes:
            return b""
        events = self._decoder.feed(chat_bytes)
        return b"".join(self._outer.feed(event) for event in events)


def composed_rules(
    outer: tuple[FieldRule, ...], inner: tuple[FieldRule, ...]
) -> tuple[FieldRule, ...]:
    """Return the field rules of a composed pair: both lists, inner fields marked."""
    marked = tuple(
        FieldRule(rule.field + STEP_MARK, rule.action, rule.reason) for rule in inner
    )
    return (*outer, *marked)
