"""OpenAI Chat Completions clients (Cursor) on AWS Bedrock Converse upstreams."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from .request import FIELD_RULES, translate_request
from .response import translate_error, translate_response
from .stream import ChatStream

__all__ = ["FIELD_RULES", "ChatStream", "ChatToConverse"]


def _random_id() -> str:
    return uuid.uuid4().hex


class ChatToConverse:
    """Serves a Chat Completions client from a Bedrock Converse upstream.

    `clock` returns Unix seconds, for the `created` field. Converse
    responses carry no id, so each translation names its completion
    "chatcmpl-" followed by a value of `new_id`.
    """

    client_api = "openai_chat"
    upstream_api = "bedrock_converse"
    upstream_path = "/model/{modelId}/converse"
    """A template: the provider puts the model id in, and streams go to
    /model/{modelId}/converse-stream."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _random_id,
    ) -> None:
        self._clock = clock
        self.completion_id = "chatcmpl-" + new_id()
        self.include_usage = False
        """True once `request` saw stream_options.include_usage set."""
        self.model = ""
        """The upstream model that `request` received, repeated in responses."""

    def request(self, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        options = body.get("stream_options")
        self.include_usage = (
            isinstance(options, dict) and options.get("include_usage") is True
        )
        self.model = model
        return translate_request(body)

    def response(self, document: dict[str, Any]) -> dict[str, Any]:
        return translate_response(
            document,
            completion_id=self.completion_id,
            model=self.model,
            created=int(self._clock()),
        )

    def error(self, status: int, document: object) -> dict[str, Any]:
        return translate_error(status, document)

    def stream(self) -> ChatStream:
        return ChatStream(
            include_usage=self.include_usage,
            completion_id=self.completion_id,
            model=self.model,
            created=int(self._clock()),
        )
