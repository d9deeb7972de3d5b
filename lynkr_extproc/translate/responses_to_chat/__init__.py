"""OpenAI Responses clients (Codex) on OpenAI Chat Completions upstreams."""

from __future__ import annotations

from typing import Any

from .request import FIELD_RULES, RequestContext, request_context, translate_request
from .response import translate_error, translate_response
from .stream import ResponsesStream

__all__ = ["FIELD_RULES", "ResponsesStream", "ResponsesToChat"]


class ResponsesToChat:
    """Serves a Responses client from a Chat Completions upstream."""

    client_api = "openai_responses"
    upstream_api = "openai_chat"
    upstream_path = "/v1/chat/completions"

    def __init__(self) -> None:
        self.context = RequestContext()
        """Set by `request`: custom tool names and the fields a response repeats."""

    def request(self, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        upstream = translate_request(body, model=model)
        self.context = request_context(body)
        return upstream

    def response(self, document: dict[str, Any]) -> dict[str, Any]:
        return translate_response(document, self.context)

    def error(self, status: int, document: object) -> dict[str, Any]:
        return translate_error(status, document)

    def stream(self) -> ResponsesStream:
        return ResponsesStream(self.context)
