"""Assembly of the tool calls in a Chat Completions stream.

A streamed tool call arrives in fragments under `delta.tool_calls`, each
with the call's `index`. The first fragment normally carries the id and
the name, and later ones carry pieces of the JSON arguments. Servers
differ: some send the name after the first arguments, some send every
call at index 0 with a fresh id, and some omit the index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..sse import Event
from ._common import load_json
from ._errors import error_message

logger = logging.getLogger(__name__)


@dataclass
class ChatToolCall:
    """One tool call being assembled from stream fragments."""

    position: int
    """Order of the call among the stream's calls, from 0."""
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    """The arguments received so far."""
    pending: str = ""
    """Arguments received before the client stream has shown the call."""
    started: bool = False
    """True once the client stream has shown the call."""


class ChatToolCalls:
    """Maps each `delta.tool_calls` fragment to the call it belongs to."""

    def __init__(self) -> None:
        self.calls: list[ChatToolCall] = []
        self._by_index: dict[int, ChatToolCall] = {}

    def add(self, fragment: dict[str, Any], position: int) -> tuple[ChatToolCall, str]:
        """Record a fragment, and return its call and the argument text it adds.

        A fragment without an integer index counts by its `position` in the
        chunk's list. A fragment whose id differs from the known call at
        its index starts a new call.
        """
        call = self._call_for(fragment, position)
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if call.name is None and isinstance(name, str) and name:
            call.name = name
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        call.arguments += arguments
        return call, arguments

    def _call_for(self, fragment: dict[str, Any], position: int) -> ChatToolCall:
        index = fragment.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            index = position
        call_id = fragment.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        call = self._by_index.get(index)
        if call is not None and (call_id is None or call.id in (None, call_id)):
            call.id = call.id or call_id
            return call
        call = ChatToolCall(position=len(self.calls), id=call_id)
        self.calls.append(call)
        self._by_index[index] = call
        return call


INCOMPLETE_MESSAGE = "the upstream stream ended before the response was complete"


class ChatChunkReader:
    """Reads chat completion chunks for a stream translator.

    Subclasses rebuild their client API's events: `_start` on the first
    chunk, `_choice` for the first choice of every chunk, `_end` once the
    stream finished, `_fail` for an error. This class keeps the state
    every translator needs: started and ended, the tool calls, the finish
    reason and the last (cumulative) usage.
    """

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._calls = ChatToolCalls()
        self._open_call: ChatToolCall | None = None
        self._finish_reason: str | None = None
        self._usage: Any = None
        self.dropped_fragments = 0
        """Argument fragments dropped because their tool call had closed."""

    def feed(self, event: Event) -> bytes:
        if self._ended:
            return b""
        if event.data.strip() == "[DONE]":
            return self._end()
        chunk = load_json(event.data)
        if not isinstance(chunk, dict):
            logger.debug("translate: ignored a chat stream event that is not JSON")
            return b""
        if chunk.get("error"):
            return self._fail(error_message(500, chunk))
        out = bytearray()
        if not self._started:
            out += self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._choice(choice)
        return bytes(out)

    def finish(self, *, error: str | None = None) -> bytes:
        if self._ended:
            return b""
        if error is not None:
            return self._fail(error)
        if self._finish_reason is not None:
            return self._end()
        return self._fail(INCOMPLETE_MESSAGE)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _choice(self, choice: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _end(self) -> bytes:
        raise NotImplementedError

    def _fail(self, message: str) -> bytes:
        raise NotImplementedError
