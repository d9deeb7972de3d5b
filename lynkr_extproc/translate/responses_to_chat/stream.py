"""OpenAI Chat Completions chunks -> OpenAI Responses stream events.

The client stream follows the Responses event order. response.created
and response.in_progress come first. Each output item then gets
output_item.added, its content events and output_item.done, one item at
a time. One of response.completed, response.incomplete or
response.failed ends the stream with the finished items and the usage.
Every event carries a sequence_number counting from 0.

Text becomes a message item (content_part.added, output_text.delta
events, output_text.done, content_part.done). A function call streams
its arguments in function_call_arguments.delta events. A custom tool's
input is wrapped in JSON by the upstream, so it is unwrapped and sent in
one custom_tool_call_input.delta when the call ends.

An upstream error, or a stream that ends without a finish_reason, gives
response.failed, the event Codex reads the error from.
"""

from __future__ import annotations

import logging
from typing import Any

from .._chat_calls import ChatChunkReader, ChatToolCall
from .._common import sse_event
from .request import RequestContext
from .response import (
    call_item,
    custom_input,
    item_id,
    message_item,
    response_id,
    response_object,
    status,
    text_part,
    usage,
)

logger = logging.getLogger(__name__)


class ResponsesStream(ChatChunkReader):
    """Rebuilds a Responses event stream from chat completion chunks."""

    def __init__(self, context: RequestContext) -> None:
        super().__init__()
        self._context = context
        self._sequence = 0
        self._upstream_id: Any = ""
        self._created_at: Any = 0
        self._model = ""
        self._output: list[dict[str, Any]] = []
        self._open_text: str | None = None
        """Text of the open message item, None when no message is open."""

    # -- response -----------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse_event(kind, data)

    def _response(self, state: str, **fields: Any) -> dict[str, Any]:
        return response_object(
            response_id=response_id(self._upstream_id),
            created_at=self._created_at,
            model=self._model,
            state=state,
            output=list(self._output),
            context=self._context,
            **{"usage": None, **fields},
        )

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._upstream_id = chunk.get("id", "")
        self._created_at = chunk.get("created", 0)
        self._model = str(chunk.get("model") or "")
        response = self._response("in_progress")
        out = self._event("response.created", {"response": response})
        return out + self._event("response.in_progress", {"response": response})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = bytearray()
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        for name in ("content", "refusal"):
            text = delta.get(name)
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
            out += self._close_item()
        return bytes(out)

    def _end(self) -> bytes:
        out = bytearray()
        if not self._started:
            out += self._start({})
        out += self._close_item()
        for call in self._calls.calls:
            if not call.started:
                logger.warning(
                    "translate: dropped tool call %s that the upstream never named",
                    call.id,
                )
        state, incomplete = status(self._finish_reason)
        response = self._response(
            state, usage=usage(self._usage), incomplete_details=incomplete
        )
        kind = "response.completed" if state == "completed" else "response.incomplete"
        out += self._event(kind, {"response": response})
        self._ended = True
        return bytes(out)

    def _fail(self, message: str) -> bytes:
        out = bytearray()
        if not self._started:
            out += self._start({})
        error = {"code": "server_error", "message": message}
        out += self._event(
            "response.failed", {"response": self._response("failed", error=error)}
        )
        self._ended = True
        return bytes(out)

    # -- output items -------------------------------------------------------

    def _output_index(self) -> int:
        """Return the index of the open item, which is the next to be done."""
        return len(self._output)

    def _text(self, text: str) -> bytes:
        out = b"" if self._open_text is not None else self._open_message()
        index = self._output_index()
        identifier = item_id("msg_", self._upstream_id, index)
        self._open_text = (self._open_text or "") + text
        fields = {**_part_address(identifier, index), "delta": text, "logprobs": []}
        return out + self._event("response.output_text.delta", fields)

    def _open_message(self) -> bytes:
        out = self._close_item()
        index = self._output_index()
        identifier = item_id("msg_", self._upstream_id, index)
        item = message_item(identifier, "", state="in_progress")
        item["content"] = []
        out += self._event(
            "response.output_item.added", {"output_index": index, "item": item}
        )
        out += self._event(
            "response.content_part.added",
            {**_part_address(identifier, index), "part": text_part("")},
        )
        self._open_text = ""
        return out

    def _tool_fragment(self, fragment: dict[str, Any], position: int) -> bytes:
        call, arguments = self._calls.add(fragment, position)
        if not call.started:
            call.pending += arguments
            if call.name is None:
                return b""
            return self._open_tool(call)
        if call is not self._open_call:
            if arguments:
                # NOTE: no known server interleaves tool calls, and a done
                # output item cannot be reopened.
                self.dropped_fragments += 1
                logger.warning(
                    "translate: dropped arguments of tool call %s: its item is done",
                    call.id,
                )
            return b""
        return self._arguments_delta(call, arguments)

    def _open_tool(self, call: ChatToolCall) -> bytes:
        out = self._close_item()
        index = self._output_index()
        if call.id is None:
            call.id = item_id("call_", self._upstream_id, call.position)
        call.started = True
        self._open_call = call
        item = self._call_item(call, index, arguments="", state="in_progress")
        out += self._event(
            "response.output_item.added", {"output_index": index, "item": item}
        )
        arguments, call.pending = call.pending, ""
        return out + self._arguments_delta(call, arguments)

    def _arguments_delta(self, call: ChatToolCall, arguments: str) -> bytes:
        if not arguments or self._is_custom(call):
            return b""
        index = self._output_index()
        fields = {
            "item_id": self._call_item_id(call, index),
            "output_index": index,
            "delta": arguments,
        }
        return self._event("response.function_call_arguments.delta", fields)

    def _close_item(self) -> bytes:
        if self._open_text is not None:
            return self._close_message()
        if self._open_call is not None:
            return self._close_call(self._open_call)
        return b""

    def _close_message(self) -> bytes:
        index = self._output_index()
        identifier = item_id("msg_", self._upstream_id, index)
        text = self._open_text or ""
        self._open_text = None
        address = _part_address(identifier, index)
        out = self._event(
            "response.output_text.done", {**address, "text": text, "logprobs": []}
        )
        out += self._event(
            "response.content_part.done", {**address, "part": text_part(text)}
        )
        item = message_item(identifier, text, state="completed")
        self._output.append(item)
        return out + self._event(
            "response.output_item.done", {"output_index": index, "item": item}
        )

    def _close_call(self, call: ChatToolCall) -> bytes:
        self._open_call = None
        index = self._output_index()
        identifier = self._call_item_id(call, index)
        out = bytearray()
        if self._is_custom(call):
            tool_input = custom_input(call.arguments)
            address = {"item_id": identifier, "output_index": index}
            if tool_input:
                out += self._event(
                    "response.custom_tool_call_input.delta",
                    {**address, "delta": tool_input},
                )
            out += self._event(
                "response.custom_tool_call_input.done", {**address, "input": tool_input}
            )
        else:
            fields = {
                "item_id": identifier,
                "output_index": index,
                "name": call.name,
                "arguments": call.arguments,
            }
            out += self._event("response.function_call_arguments.done", fields)
        item = self._call_item(call, index, arguments=call.arguments, state="completed")
        self._output.append(item)
        out += self._event(
            "response.output_item.done", {"output_index": index, "item": item}
        )
        return bytes(out)

    def _is_custom(self, call: ChatToolCall) -> bool:
        return call.name in self._context.custom_tools

    def _call_item_id(self, call: ChatToolCall, index: int) -> str:
        prefix = "ctc_" if self._is_custom(call) else "fc_"
        return item_id(prefix, self._upstream_id, index)

    def _call_item(
        self, call: ChatToolCall, index: int, *, arguments: str, state: str
    ) -> dict[str, Any]:
        return call_item(
            self._call_item_id(call, index),
            call_id=call.id or "",
            name=call.name or "",
            arguments=arguments,
            custom=self._is_custom(call),
            state=state,
        )


def _part_address(identifier: str, index: int) -> dict[str, Any]:
    return {"item_id": identifier, "output_index": index, "content_index": 0}
