"""The interface every API format module implements.

A format module knows one wire API (OpenAI Chat Completions, Anthropic
Messages, OpenAI Responses): how to read the facts routing and admission
need from a request body, how to prepare that body for the upstream, and
how to read token usage from a buffered JSON body or from stream events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..pricing import Usage
from ..sse import Event


@dataclass
class RequestFacts:
    """What routing, scoring and admission read from one request body."""

    model: str
    stream: bool
    output_cap: int | None
    """The request's own output cap (max_tokens and its variants), if any."""
    text: str
    """Concatenated text of the system prompt and every message."""
    last_user_text: str
    message_count: int
    tool_names: list[str] = field(default_factory=list)
    tool_result_count: int = 0
    in_tool_loop: bool = False
    """True when the last message carries tool results for the model."""
    first_messages_digest: str = ""
    """Hash of the system prompt and first user message: a conversation id."""
    image_count: int = 0
    tools_chars: int = 0
    """Length of the tool definitions' JSON, which counts as input."""
    client_wants_usage: bool = False
    """True when a streamed request asked for usage itself."""


class StreamMeter(Protocol):
    """Reads usage from one streamed response, event by event."""

    usage: Usage | None
    """The latest usage seen; events carry cumulative totals, last wins."""
    text_chars: int
    """Characters of generated text seen, for estimating lost usage."""
    finished: bool
    """True once the API's terminal event has been seen."""
    failed: bool
    """True when the stream carried an error event."""
    flags: set[str]
    """Usage anomalies seen, such as negative_tokens or invalid_usage."""

    def feed(self, event: Event) -> None: ...

    def is_usage_only(self, event: Event) -> bool:
        """Return True when `event` exists only to carry usage."""
        ...


class ApiFormat(Protocol):
    """One client-facing wire API."""

    name: str
    """Format id used in config and logs, e.g. "openai_chat"."""
    error_style: str
    """"openai" or "anthropic": the shape of JSON error bodies."""

    def read_request(self, body: dict[str, Any]) -> RequestFacts: ...

    def prepare_upstream(
        self, body: dict[str, Any], *, model: str, include_usage: bool
    ) -> dict[str, Any]:
        """Return the body to send upstream with `model` set."""
        ...

    def usage_from_json(self, document: Any, flags: set[str]) -> Usage | None:
        """Return the usage of a buffered response; anomalies go to `flags`."""
        ...

    def text_chars_from_json(self, document: Any) -> int: ...

    def new_meter(self) -> StreamMeter: ...
