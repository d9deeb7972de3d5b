"""OpenAI Chat Completions clients (Cursor) on Anthropic Messages upstreams."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .request import DEFAULT_MAX_TOKENS, FIELD_RULES, translate_request
from .response import translate_error, translate_response
from .stream import ChatStream

__all__ = ["DEFAULT_MAX_TOKENS", "FIELD_RULES", "ChatStream", "ChatToAnthropic"]


class ChatToAnthropic:
    """Serves a Chat Completions client from an Anthropic Messages upstream.

    `clock` returns Unix seconds, for the `created` field that chat
    responses carry and Anthropic responses lack.
    """

    client_api = "openai_chat"
    upstream_api = "anthropic_messages"
    upstream_path = "/v1/messages"

    def __init__(
        self,
        *,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._default_max_tokens = default_max_tokens
        self._clock = clock
        self.include_usage = False
        """True once `request` saw stream_options.include_usage set."""

    def request(self, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        options = body.get("stream_options")
        self.include_usage = (
            isinstance(options, dict) and options.get("include_usage") is True
        )
        return translate_request(
            body, model=model, default_max_tokens=self._default_max_tokens
        )

    def response(self, document: dict[str, Any]) -> dict[str, Any]:
        return translate_response(document, created=int(self._clock()))

    def error(self, status: int, document: object) -> dict[str, Any]:
        return translate_error(status, document)

    def stream(self) -> ChatStream:
        return ChatStream(include_usage=self.include_usage, created=int(self._clock()))
