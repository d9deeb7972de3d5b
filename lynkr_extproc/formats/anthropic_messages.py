"""Anthropic Messages: /v1/messages.

Usage meaning: `input_tokens` excludes `cache_read_input_tokens` and
`cache_creation_input_tokens`; `output_tokens` includes thinking. In a
stream, `message_start` carries the first usage and every
`message_delta` carries cumulative totals, often only `output_tokens`: a
field present in a later event replaces the earlier value, never adds.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidRequestError
from ..pricing import Usage
from ..sse import Event
from . import _common
from .base import RequestFacts

name = "anthropic_messages"
error_style = "anthropic"

_FIELDS = {
    "input_tokens": "input_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "output_tokens": "output_tokens",
}


def read_request(body: dict[str, Any]) -> RequestFacts:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("\"messages\" must be a non-empty list")
    texts: list[str] = []
    _common.content_text(body.get("system"), texts)
    first_parts = ["\n".join(texts)]
    images = results = 0
    last_user = ""
    last_results = 0
    for message in messages:
        if not isinstance(message, dict):
            raise InvalidRequestError("every entry of \"messages\" must be an object")
        before = len(texts)
        found_images, found_results = _common.content_text(message.get("content"), texts)
        images += found_images
        results += found_results
        last_results = found_results
        if message.get("role") == "user":
            last_user = "\n".join(texts[before:])
            if len(first_parts) < 2:
                first_parts.append(last_user)
    tools = body.get("tools") or []
    tool_names = [str(tool.get("name", "")) for tool in tools if isinstance(tool, dict)]
    return RequestFacts(
        model=_common.require_model(body),
        stream=_common.require_stream_flag(body),
        output_cap=_common.output_cap(body, "max_tokens"),
        text="\n".join(texts),
        last_user_text=last_user,
        message_count=len(messages),
        tool_names=tool_names,
        tool_result_count=results,
        in_tool_loop=last_results > 0,
        first_messages_digest=_common.digest(first_parts),
        image_count=images,
        tools_chars=_common.json_size(tools),
        client_wants_usage=True,
    )


def prepare_upstream(
    body: dict[str, Any], *, model: str, include_usage: bool
) -> dict[str, Any]:
    prepared = copy.copy(body)
    prepared["model"] = model
    return prepared


def _merge(previous: Usage | None, raw: Any, flags: set[str]) -> Usage | None:
    if not isinstance(raw, dict):
        return previous
    # A null count in a later event means "not reported here", never 0.
    present = {
        ours: raw[theirs] for theirs, ours in _FIELDS.items() if raw.get(theirs) is not None
    }
    reading = _common.build_usage(flags, **present)
    if reading is None:
        return previous
    if previous is None:
        return reading
    merged = {field: getattr(reading, field) for field in present}
    return Usage(**{**previous.__dict__, **merged})


def usage_from_json(document: Any, flags: set[str]) -> Usage | None:
    if not isinstance(document, dict):
        return None
    return _merge(None, document.get("usage"), flags)


def text_chars_from_json(document: Any) -> int:
    if not isinstance(document, dict):
        return 0
    total = 0
    for block in document.get("content") or []:
        if not isinstance(block, dict):
            continue
        for field in ("text", "thinking"):
            value = block.get(field)
            if isinstance(value, str):
                total += len(value)
        if block.get("type") == "tool_use":
            total += len(str(block.get("input", "")))
    return total


_DELTA_TEXT_FIELDS = ("text", "partial_json", "thinking")


class Meter:
    """Reads usage from a Messages event stream."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finished = False
        self.failed = False
        self.flags: set[str] = set()

    def feed(self, event: Event) -> None:
        payload = _common.load_json_event(event.data)
        if not isinstance(payload, dict):
            return
        kind = payload.get("type", event.event)
        if kind == "message_start":
            message = payload.get("message") or {}
            self.usage = _merge(self.usage, message.get("usage"), self.flags)
        elif kind == "message_delta":
            self.usage = _merge(self.usage, payload.get("usage"), self.flags)
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            for field in _DELTA_TEXT_FIELDS:
                value = delta.get(field)
                if isinstance(value, str):
                    self.text_chars += len(value)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.failed = True

    def is_usage_only(self, event: Event) -> bool:
        return False


def new_meter() -> Meter:
    return Meter()
