"""OpenAI Chat Completions: /v1/chat/completions.

Usage meaning: `prompt_tokens` includes `prompt_tokens_details.
cached_tokens` (and OpenRouter's `cache_write_tokens`), and
`completion_tokens` includes `completion_tokens_details.reasoning_tokens`. A streamed response carries usage only when the request
sets `stream_options.include_usage`, in a last chunk whose `choices` is
empty. Databricks model serving instead puts a running usage in every
chunk (for Claude, `completion_tokens` is null until the chunk with
`finish_reason`), so usage ends a stream only in a usage-only chunk or
once a `finish_reason` has been seen.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidRequestError
from ..money import parse_usd, usd_to_nanos
from ..pricing import Usage
from ..sse import Event
from . import _common
from .base import RequestFacts

name = "openai_chat"
error_style = "openai"


def read_request(body: dict[str, Any]) -> RequestFacts:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("\"messages\" must be a non-empty list")
    texts: list[str] = []
    images = results = 0
    first_parts: list[str] = []
    seen_user = False
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            raise InvalidRequestError("every entry of \"messages\" must be an object")
        role = message.get("role")
        before = len(texts)
        found_images, _ = _common.content_text(message.get("content"), texts)
        images += found_images
        if role == "tool":
            results += 1
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                function = call.get("function") or {}
                texts.append(str(function.get("arguments", "")))
        if role == "user":
            last_user = "\n".join(texts[before:])
        if not seen_user and role in ("system", "developer", "user"):
            first_parts.append("\n".join(texts[before:]))
        seen_user = seen_user or role == "user"
    tools = body.get("tools") or []
    tool_names = [
        str((tool.get("function") or {}).get("name", ""))
        for tool in tools
        if isinstance(tool, dict)
    ]
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    last_role = messages[-1].get("role") if isinstance(messages[-1], dict) else None
    return RequestFacts(
        model=_common.require_model(body),
        stream=_common.require_stream_flag(body),
        output_cap=_common.output_cap(body, "max_completion_tokens", "max_tokens"),
        text="\n".join(texts),
        last_user_text=last_user,
        message_count=len(messages),
        tool_names=tool_names,
        tool_result_count=results,
        in_tool_loop=last_role == "tool",
        first_messages_digest=_common.digest(first_parts),
        image_count=images,
        tools_chars=_common.json_size(tools),
        client_wants_usage=wants_usage,
    )


def prepare_upstream(
    body: dict[str, Any], *, model: str, include_usage: bool
) -> dict[str, Any]:
    prepared = copy.copy(body)
    prepared["model"] = model
    if include_usage and prepared.get("stream") is True:
        options = prepared.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        prepared["stream_options"] = options
    return prepared


def usage_from_json(document: Any, flags: set[str]) -> Usage | None:
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    reading = _common.build_usage(
        flags,
        input_tokens=usage.get("prompt_tokens"),
        cache_read_tokens=prompt_details.get("cached_tokens"),
        cache_write_tokens=prompt_details.get("cache_write_tokens"),
        output_tokens=usage.get("completion_tokens"),
        reasoning_tokens=completion_details.get("reasoning_tokens"),
    )
    if reading is None:
        return None
    # Cache reads and (OpenRouter's) cache writes are parts of prompt_tokens.
    cached = min(reading.cache_read_tokens, reading.input_tokens)
    written = min(reading.cache_write_tokens, reading.input_tokens - cached)
    return Usage(
        input_tokens=reading.input_tokens - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=reading.output_tokens,
        reasoning_tokens=min(reading.reasoning_tokens, reading.output_tokens),
    )


def provider_cost_from_json(document: Any) -> int | None:
    """Return `usage.cost` (USD, as OpenRouter reports it) in nano-dollars."""
    usage = document.get("usage") if isinstance(document, dict) else None
    cost = usage.get("cost") if isinstance(usage, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, (int, float, str)):
        return None
    try:
        nanos = usd_to_nanos(parse_usd(cost))
    except (ValueError, ArithmeticError):
        return None
    return nanos if nanos >= 0 else None


def text_chars_from_json(document: Any) -> int:
    if not isinstance(document, dict):
        return 0
    total = 0
    for choice in document.get("choices") or []:
        if isinstance(choice, dict):
            total += _message_chars(choice.get("message") or choice.get("delta"))
    return total


def _message_chars(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    total = 0
    for field in ("content", "reasoning_content", "refusal"):
        value = message.get(field)
        if isinstance(value, str):
            total += len(value)
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                total += len(arguments)
    return total


class Meter:
    """Reads usage from a Chat Completions event stream."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finished = False
        self.failed = False
        self.flags: set[str] = set()
        self.provider_cost: int | None = None
        self._choices_finished = False

    def feed(self, event: Event) -> None:
        if event.data == "[DONE]":
            self.finished = True
            return
        chunk = _common.load_json_event(event.data)
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self.failed = True
        self.text_chars += text_chars_from_json(chunk)
        choices = chunk.get("choices")
        if _has_finish_reason(choices):
            self._choices_finished = True
        usage = usage_from_json(chunk, self.flags)
        if usage is not None:
            self.usage = usage
            self.provider_cost = provider_cost_from_json(chunk)
            # A running usage before any finish_reason (Databricks) does
            # not end the stream, so a cut after it is still estimated.
            if self._choices_finished or not choices:
                self.finished = True

    def is_usage_only(self, event: Event) -> bool:
        if '"usage"' not in event.data:
            return False
        chunk = _common.load_json_event(event.data)
        return (
            isinstance(chunk, dict)
            and chunk.get("choices") == []
            and isinstance(chunk.get("usage"), dict)
        )


def _has_finish_reason(choices: Any) -> bool:
    """Return True when any choice of a chunk carries a finish_reason."""
    if not isinstance(choices, list):
        return False
    return any(
        isinstance(choice, dict) and choice.get("finish_reason") for choice in choices
    )


def new_meter() -> Meter:
    return Meter()
