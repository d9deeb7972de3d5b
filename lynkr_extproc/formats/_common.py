"""Helpers shared by the format modules."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable

from ..errors import InvalidRequestError
from ..pricing import Usage

MAX_TOKENS = 100_000_000
"""Largest token count believed from one response; larger ones are invalid usage."""


def count(value: Any) -> int | None:
    """Return a token count from a usage field, or None when invalid.

    Booleans, NaN, infinities, fractions and non-numbers are invalid.
    Negative counts are clamped to 0 by the caller, which flags them.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    return value


def output_cap(body: dict[str, Any], *names: str) -> int | None:
    """Return the first positive integer among the named cap fields."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(
                f"{name} must be a positive integer, got {value!r}"
            )
        return value
    return None


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("the request body has no \"model\" string")
    return model


def require_stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequestError(f"\"stream\" must be true or false, got {stream!r}")
    return stream


def digest(parts: Iterable[str]) -> str:
    """Hash text parts into a short stable conversation id."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
    return hasher.hexdigest()[:32]


def content_text(content: Any, into: list[str]) -> tuple[int, int]:
    """Append the text of a message content to `into`.

    Content is a string or a list of blocks; image data is never counted
    as text. Returns the number of image blocks and of tool-result blocks.
    """
    if isinstance(content, str):
        into.append(content)
        return 0, 0
    if not isinstance(content, list):
        return 0, 0
    images = results = 0
    for block in content:
        if isinstance(block, str):
            into.append(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("image", "image_url", "input_image", "document"):
            images += 1
        elif kind == "tool_result":
            results += 1
            content_text(block.get("content"), into)
        elif kind == "tool_use":
            into.append(json.dumps(block.get("input"), ensure_ascii=False))
        else:
            text = block.get("text")
            if isinstance(text, str):
                into.append(text)
    return images, results


def json_size(value: Any) -> int:
    """Return the length of `value` as compact JSON, 0 when empty."""
    if not value:
        return 0
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def load_json_event(data: str) -> Any:
    """Parse one event's JSON data, or return None when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def build_usage(flags: set[str], **fields: Any) -> Usage | None:
    """Build a Usage from raw counts, or None when any count is invalid.

    Missing counts are 0. A negative count is clamped to 0 and flagged
    `negative_tokens`. A non-numeric or non-finite count flags
    `invalid_usage`, so that the caller estimates instead of charging 0.
    """
    values: dict[str, int] = {}
    for name, raw in fields.items():
        if raw is None:
            values[name] = 0
            continue
        value = count(raw)
        if value is None or value > MAX_TOKENS:
            flags.add("invalid_usage")
            return None
        if value < 0:
            flags.add("negative_tokens")
            value = 0
        values[name] = value
    return Usage(**values)
