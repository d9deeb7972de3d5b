"""OpenAI Chat Completions chunks -> Anthropic Messages stream events.

The client stream is valid after every call: message_start comes first,
each content block is started before its deltas and stopped before the
next block starts, block indexes count up from 0, and message_delta and
message_stop come last. Text and each tool call get a block of their
own, in the order the upstream sends them.

Tool arguments are streamed as the upstream sends them. Arguments that
are not valid JSON therefore reach the client as they are, and its SDK
reports the parse error, where a buffered response wraps them under
"_raw" (see RAW_ARGUMENTS_KEY).

Usage arrives in the last chunk, after the finish_reason chunk, when the
request set stream_options.include_usage, so message_start carries input
tokens only when the first chunk reports them (0 otherwise) and
message_delta carries the final counts.
"""

from __future__ import annotations

import logging
from typing import Any

from .._chat_calls import ChatChunkReader, ChatToolCall
from .._common import sse_event
from .._errors import anthropic_error
from .response import message_id, stop_reason, tool_use_id, usage

logger = logging.getLogger(__name__)


class MessagesStream(ChatChunkReader):
    """Rebuilds an Anthropic Messages event stream from chat completion chunks."""

    def __init__(self) -> None:
        super().__init__()
        self._message_id = message_id("")
        self._upstream_id: Any = ""
        self._model = ""
        self._next_block = 0
        self._open_block: int | None = None
        self._open_kind: str | None = None

    # -- message ------------------------------------------------------------

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._upstream_id = chunk.get("id", "")
        self._message_id = message_id(self._upstream_id)
        self._model = str(chunk.get("model") or "")
        start_usage = usage(chunk.get("usage"))
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = bytearray()
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        for field in ("content", "refusal"):
            text = delta.get(field)
            if isinstance(text, str) and text:
                out += self._text(text)
        fragments = delta.get("tool_calls")
        if isinstance(fragments, list):
            for position, fragment in enumerate(fragments):
                if isinstance(fragment, dict):
                    out += self._tool_fragment(fragment, position)
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason
            out += self._close_block()
        return bytes(out)

    def _end(self) -> bytes:
        out = bytearray()
        if not self._started:
            out += self._start({})
        self._warn_unnamed_calls()
        out += self._close_block()
        has_calls = any(call.started for call in self._calls.calls)
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(
                    self._finish_reason, has_tool_calls=has_calls
                ),
                "stop_sequence": None,
            },
            # NOTE: an upstream that ignores stream_options.include_usage
            # sends no usage, and the counts here are then 0.
            "usage": usage(self._usage),
        }
        out += sse_event("message_delta", delta)
        out += sse_event("message_stop", {"type": "message_stop"})
        self._ended = True
        return bytes(out)

    def _fail(self, message: str) -> bytes:
        self._ended = True
        return sse_event("error", anthropic_error("api_error", message))

    # -- content blocks -----------------------------------------------------

    def _open(self, kind: str, content_block: dict[str, Any]) -> bytes:
        out = self._close_block()
        index = self._next_block
        self._next_block += 1
        self._open_block = index
        self._open_kind = kind
        start = {
            "type": "content_block_start",
            "index": index,
            "content_block": content_block,
        }
        return out + sse_event("content_block_start", start)

    def _close_block(self) -> bytes:
        if self._open_block is None:
            return b""
        stop = {"type": "content_block_stop", "index": self._open_block}
        self._open_block = None
        self._open_kind = None
        self._open_call = None
        return sse_event("content_block_stop", stop)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {
            "type": "content_block_delta",
            "index": self._open_block,
            "delta": delta,
        }
        return sse_event("content_block_delta", event)

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open_kind != "text":
            out = self._open("text", {"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def _tool_fragment(self, fragment: dict[str, Any], position: int) -> bytes:
        call, arguments = self._calls.add(fragment, position)
        if not call.started:
            call.pending += arguments
            if call.name is None:
                return b""
            return self._open_tool(call)
        if call is not self._open_call:
            if arguments:
                # NOTE: no known server interleaves tool calls, and a
                # stopped Anthropic block cannot be reopened.
                self.dropped_fragments += 1
                logger.warning(
                    "translate: dropped arguments of tool call %s: its block closed",
                    call.id,
                )
            return b""
        if not arguments:
            return b""
        return self._delta({"type": "input_json_delta", "partial_json": arguments})

    def _open_tool(self, call: ChatToolCall) -> bytes:
        if call.id is None:
            call.id = tool_use_id(self._upstream_id, call.position)
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        out = self._open("tool_use", block)
        call.started = True
        self._open_call = call
        arguments, call.pending = call.pending, ""
        if arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def _warn_unnamed_calls(self) -> None:
        for call in self._calls.calls:
            if not call.started:
                logger.warning(
                    "translate: dropped tool call %s that the upstream never named",
                    call.id,
                )
