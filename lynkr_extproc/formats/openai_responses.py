"""OpenAI Responses: /v1/responses.

Usage meaning: `input_tokens` includes `input_tokens_details.cached_tokens`
and `output_tokens` includes `output_tokens_details.reasoning_tokens`. A
stream ends with `response.completed`, `response.incomplete` or
`response.failed`, each carrying the final usage under `response.usage`
(which may be null on a failure).
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidRequestError
from ..pricing import Usage
from ..sse import Event
from . import _common
from .base import RequestFacts

name = "openai_responses"
error_style = "openai"

_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
_TEXT_DELTAS = {
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.refusal.delta",
}


def read_request(body: dict[str, Any]) -> RequestFacts:
    texts: list[str] = []
    _common.content_text(body.get("instructions"), texts)
    first_parts = ["\n".join(texts)]
    raw_input = body.get("input")
    items = [raw_input] if isinstance(raw_input, str) else raw_input
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("\"input\" must be a string or a non-empty list")
    images = results = 0
    last_user = ""
    last_kind = None
    for item in items:
        before = len(texts)
        if isinstance(item, str):
            texts.append(item)
            last_user, last_kind = item, "message"
            continue
        if not isinstance(item, dict):
            raise InvalidRequestError("every entry of \"input\" must be an object")
        last_kind = item.get("type", "message")
        if last_kind == "function_call_output":
            results += 1
            texts.append(str(item.get("output", "")))
        elif last_kind == "function_call":
            texts.append(str(item.get("arguments", "")))
        else:
            found_images, _ = _common.content_text(item.get("content"), texts)
            images += found_images
            if item.get("role") == "user":
                last_user = "\n".join(texts[before:])
                if len(first_parts) < 2:
                    first_parts.append(last_user)
    tools = body.get("tools") or []
    tool_names = [str(tool.get("name", tool.get("type", ""))) for tool in tools if isinstance(tool, dict)]
    return RequestFacts(
        model=_common.require_model(body),
        stream=_common.require_stream_flag(body),
        output_cap=_common.output_cap(body, "max_output_tokens"),
        text="\n".join(texts),
        last_user_text=last_user,
        message_count=len(items),
        tool_names=tool_names,
        tool_result_count=results,
        in_tool_loop=last_kind == "function_call_output",
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


def _usage(raw: Any, flags: set[str]) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    input_details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    reading = _common.build_usage(
        flags,
        input_tokens=raw.get("input_tokens"),
        cache_read_tokens=input_details.get("cached_tokens"),
        output_tokens=raw.get("output_tokens"),
        reasoning_tokens=output_details.get("reasoning_tokens"),
    )
    if reading is None:
        return None
    cached = min(reading.cache_read_tokens, reading.input_tokens)
    return Usage(
        input_tokens=reading.input_tokens - cached,
        cache_read_tokens=cached,
        output_tokens=reading.output_tokens,
        reasoning_tokens=min(reading.reasoning_tokens, reading.output_tokens),
    )


def usage_from_json(document: Any, flags: set[str]) -> Usage | None:
    if not isinstance(document, dict):
        return None
    return _usage(document.get("usage"), flags)


def text_chars_from_json(document: Any) -> int:
    if not isinstance(document, dict):
        return 0
    total = 0
    for item in document.get("output") or []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("arguments"), str):
            total += len(item["arguments"])
        for part in item.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
    return total


class Meter:
    """Reads usage from a Responses event stream."""

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
        if kind in _TEXT_DELTAS:
            delta = payload.get("delta")
            if isinstance(delta, str):
                self.text_chars += len(delta)
        elif kind in _TERMINAL:
            self.finished = True
            self.failed = kind == "response.failed"
            response = payload.get("response") or {}
            usage = _usage(response.get("usage"), self.flags)
            if usage is not None:
                self.usage = usage
        elif kind == "error":
            self.failed = True

    def is_usage_only(self, event: Event) -> bool:
        return False


def new_meter() -> Meter:
    return Meter()
