"""Anthropic Messages stream events -> OpenAI Chat Completions chunks.

Each text delta becomes a content chunk, each tool_use block a tool call
whose arguments follow its input_json_delta events, and message_delta a
chunk with the finish_reason. At message_stop the client gets a usage
chunk (choices empty) when it set stream_options.include_usage, then
`data: [DONE]`. An Anthropic `error` event becomes a chunk with an
`error` object, which the OpenAI SDKs raise, and ends the stream without
[DONE].
"""

from __future__ import annotations

import logging
from typing import Any

from ...sse import Event
from .._common import chat_chunk, dump_arguments, load_json, sse_data
from .._errors import error_message, error_type, openai_error
from .response import completion_id, finish_reason, usage

logger = logging.getLogger(__name__)

INCOMPLETE_MESSAGE = "the upstream stream ended before the response was complete"


class ChatStream:
    """Rebuilds a chat completion chunk stream from Anthropic stream events."""

    def __init__(self, *, include_usage: bool, created: int) -> None:
        self._include_usage = include_usage
        self._created = created
        self._id = completion_id("")
        self._model = ""
        self._tool_index_by_block: dict[int, int] = {}
        self._usage: dict[str, Any] = {}
        self._finish_reason: str | None = None
        self._ended = False

    def feed(self, event: Event) -> bytes:
        if self._ended:
            return b""
        payload = load_json(event.data)
        if not isinstance(payload, dict):
            logger.debug(
                "translate: ignored an Anthropic stream event that is not JSON"
            )
            return b""
        kind = payload.get("type", event.event)
        if kind == "message_start":
            return self._message_start(payload)
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "message_delta":
            return self._message_delta(payload)
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            return self._fail(error_message(500, payload), error_type(payload))
        return b""

    def finish(self, *, error: str | None = None) -> bytes:
        if self._ended:
            return b""
        if error is not None:
            return self._fail(error, None)
        if self._finish_reason is not None:
            return self._end()
        return self._fail(INCOMPLETE_MESSAGE, None)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return chat_chunk(
            self._id, self._created, self._model, delta, finish, include_usage=self._include_usage
        )

    def _message_start(self, payload: dict[str, Any]) -> bytes:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        self._id = completion_id(message.get("id", ""))
        self._model = str(message.get("model") or "")
        self._merge_usage(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block")
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        if kind != "tool_use":
            return b""
        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[payload.get("index")] = tool_index
        # Anthropic starts a streamed tool_use with input {} and sends the
        # input in deltas. A non-empty input here is sent whole.
        tool_input = block.get("input")
        arguments = dump_arguments(tool_input) if tool_input else ""
        call = {
            "index": tool_index,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": arguments},
        }
        return self._chunk({"tool_calls": [call]})

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]}) if delta["text"] else b""
        if kind != "input_json_delta":
            return b""
        partial = delta.get("partial_json")
        tool_index = self._tool_index_by_block.get(payload.get("index"))
        if tool_index is None or not isinstance(partial, str) or not partial:
            return b""
        call = {"index": tool_index, "function": {"arguments": partial}}
        return self._chunk({"tool_calls": [call]})

    def _message_delta(self, payload: dict[str, Any]) -> bytes:
        self._merge_usage(payload.get("usage"))
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("stop_reason") is None:
            return b""
        self._finish_reason = finish_reason(delta["stop_reason"])
        return self._chunk({}, self._finish_reason)

    def _merge_usage(self, raw: Any) -> None:
        """Keep the latest value of each count: Anthropic's counts are cumulative."""
        if isinstance(raw, dict):
            self._usage.update(
                {key: value for key, value in raw.items() if value is not None}
            )

    def _end(self) -> bytes:
        out = bytearray()
        if self._finish_reason is None:
            self._finish_reason = "stop"
            out += self._chunk({}, self._finish_reason)
        if self._include_usage:
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": usage(self._usage),
            }
            out += sse_data(chunk)
        out += sse_data("[DONE]")
        self._ended = True
        return bytes(out)

    def _fail(self, message: str, kind: str | None) -> bytes:
        self._ended = True
        return sse_data(openai_error(kind or "server_error", message, code=kind))
