"""Bedrock ConverseStream events -> OpenAI Chat Completions chunks.

The events come from the AWS event stream framing, each named by its
`:event-type` header. A stream starts with messageStart. Each content
block then sends an optional contentBlockStart, which names a tool use,
some contentBlockDelta events and a contentBlockStop. A delta carries
text, a piece of the tool input's JSON, or reasoning. messageStop
carries the stopReason, and metadata comes last with the usage, so the
stream ends at metadata, not at messageStop.

messageStart becomes the role chunk, each delta a content, tool call or
`reasoning_content` chunk, and messageStop the finish_reason chunk. At
metadata the client gets a usage chunk (choices empty) when it set
stream_options.include_usage, then `data: [DONE]`. An exception event
(`exception:throttlingException`, say) becomes a chunk with an `error`
object, which the OpenAI SDKs raise, and ends the stream without [DONE].
"""

from __future__ import annotations

import logging
from typing import Any

from ...sse import Event
from .._common import chat_chunk, load_json, sse_data
from .._errors import error_message, openai_error
from .response import exception_error, finish_reason, usage

logger = logging.getLogger(__name__)

INCOMPLETE_MESSAGE = "the upstream stream ended before the response was complete"
EXCEPTION_PREFIX = "exception:"


class ChatStream:
    """Rebuilds a chat completion chunk stream from ConverseStream events."""

    def __init__(
        self, *, include_usage: bool, completion_id: str, model: str, created: int
    ) -> None:
        self._include_usage = include_usage
        self._id = completion_id
        self._model = model
        self._created = created
        self._started = False
        self._ended = False
        self._tool_index_by_block: dict[Any, int] = {}
        self._usage: Any = None
        self._finish_reason: str | None = None
        self.dropped_fragments = 0
        """Tool input pieces dropped because no contentBlockStart named their call."""

    def feed(self, event: Event) -> bytes:
        if self._ended:
            return b""
        kind = event.event
        if kind.startswith(EXCEPTION_PREFIX):
            return self._exception(kind[len(EXCEPTION_PREFIX) :], event.data)
        payload = load_json(event.data)
        if kind == "message" and isinstance(payload, dict) and len(payload) == 1:
            # Frames already decoded into JSON lines: {"contentBlockDelta": {...}}.
            kind, payload = next(iter(payload.items()))
        if not isinstance(payload, dict):
            logger.debug("translate: ignored a Converse stream event that is not JSON")
            return b""
        if kind == "messageStart":
            return self._start()
        if kind == "contentBlockStart":
            return self._block_start(payload)
        if kind == "contentBlockDelta":
            return self._block_delta(payload)
        if kind == "messageStop":
            return self._message_stop(payload)
        if kind == "metadata":
            self._usage = payload.get("usage")
            return self._end()
        return b""

    def finish(self, *, error: str | None = None) -> bytes:
        if self._ended:
            return b""
        if error is not None:
            return self._fail(openai_error("server_error", error))
        if self._finish_reason is not None:
            return self._end()
        return self._fail(openai_error("server_error", INCOMPLETE_MESSAGE))

    # -- events -------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        start = payload.get("start")
        tool_use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(tool_use, dict):
            return b""
        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[payload.get("contentBlockIndex")] = tool_index
        call = {
            "index": tool_index,
            "id": str(tool_use.get("toolUseId") or ""),
            "type": "function",
            "function": {"name": str(tool_use.get("name") or ""), "arguments": ""},
        }
        return self._start() + self._chunk({"tool_calls": [call]})

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        text = delta.get("text")
        if isinstance(text, str) and text:
            return self._start() + self._chunk({"content": text})
        tool_use = delta.get("toolUse")
        if isinstance(tool_use, dict):
            return self._tool_input(payload.get("contentBlockIndex"), tool_use)
        reasoning = delta.get("reasoningContent")
        reasoning_text = reasoning.get("text") if isinstance(reasoning, dict) else None
        if isinstance(reasoning_text, str) and reasoning_text:
            return self._start() + self._chunk({"reasoning_content": reasoning_text})
        return b""

    def _tool_input(self, block_index: Any, tool_use: dict[str, Any]) -> bytes:
        piece = tool_use.get("input")
        if not isinstance(piece, str) or not piece:
            return b""
        tool_index = self._tool_index_by_block.get(block_index)
        if tool_index is None:
            self.dropped_fragments += 1
            logger.warning(
                "translate: dropped tool input of content block %r: no "
                "contentBlockStart named its tool",
                block_index,
            )
            return b""
        call = {"index": tool_index, "function": {"arguments": piece}}
        return self._chunk({"tool_calls": [call]})

    def _message_stop(self, payload: dict[str, Any]) -> bytes:
        if self._finish_reason is not None:
            return b""
        self._finish_reason = finish_reason(payload.get("stopReason"))
        return self._start() + self._chunk({}, self._finish_reason)

    def _exception(self, exception: str, data: str) -> bytes:
        document = load_json(data)
        message = error_message(500, data if document is None else document)
        return self._fail(exception_error(exception, message))

    # -- output -------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return chat_chunk(
            self._id, self._created, self._model, delta, finish, include_usage=self._include_usage
        )

    def _end(self) -> bytes:
        out = bytearray()
        if self._finish_reason is None:
            self._finish_reason = "stop"
            out += self._start() + self._chunk({}, self._finish_reason)
        # NOTE: a stream cut between messageStop and metadata has no usage,
        # and the client then gets no usage chunk rather than zero counts.
        if self._include_usage and isinstance(self._usage, dict):
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

    def _fail(self, error: dict[str, Any]) -> bytes:
        self._ended = True
        return sse_data(error)
