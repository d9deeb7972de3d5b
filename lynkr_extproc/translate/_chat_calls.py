"""Assembly of the tool calls in a Chat Completions stream.

A streamed tool call arrives in fragments under `delta.tool_calls`, each
with the call's `index`. The first fragment normally carries the id and
the name, and later ones carry pieces of the JSON arguments. Servers
differ: some send the name after the first arguments, some send every
call at index 0 with a fresh id, and some omit the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
