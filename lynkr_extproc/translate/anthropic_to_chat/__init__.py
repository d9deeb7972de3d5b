"""Anthropic Messages clients (Claude Code) on OpenAI Chat Completions upstreams."""

from __future__ import annotations

from typing import Any

from .request import FIELD_RULES, translate_request
from .response import translate_error, translate_response
from .stream import MessagesStream

__all__ = ["FIELD_RULES", "AnthropicToChat", "MessagesStream"]


class AnthropicToChat:
    """Serves an Anthropic Messages client from a Chat Completions upstream."""

    client_api = "anthropic_messages"
    upstream_api = "openai_chat"
    upstream_path = "/v1/chat/completions"

    def request(self, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        return translate_request(body, model=model)

    def response(self, document: dict[str, Any]) -> dict[str, Any]:
        return translate_response(document)

    def error(self, status: int, document: object) -> dict[str, Any]:
        return translate_error(status, document)

    def stream(self) -> MessagesStream:
        return MessagesStream()
