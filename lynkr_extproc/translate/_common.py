"""Helpers shared by the translations: ids, JSON, SSE framing and checks."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidRequestError

RAW_ARGUMENTS_KEY = "_raw"
"""Key of the object that carries tool arguments which are not a JSON object.

A tool call whose arguments do not parse as a JSON object becomes
`{"_raw": "<the arguments as sent>"}`. The client's check of the input
against the tool's schema then fails visibly, and the text survives a
round trip, where an empty object would call the tool with no arguments.
"""

_REASONING_MODEL = re.compile(r"^(o1|o3|o4|gpt-5|gpt-oss)([-.:_]|$)")


@dataclass(frozen=True)
class FieldRule:
    """A translation's handling of a client field that the upstream API lacks."""

    field: str
    """The field's path in the client request, e.g. "messages[].content[]"."""
    action: Literal["dropped", "changed", "rejected"]
    """"dropped": left out of the upstream request. "changed": sent in a
    weaker form that the reason describes. "rejected": the request fails
    with InvalidRequestError when the field is set to a non-default value."""
    reason: str


def derive_id(prefix: str, *parts: object) -> str:
    """Return `prefix` and a hash of `parts`: the same parts give the same id."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(str(part).encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
    return prefix + hasher.hexdigest()[:24]


def dump_json(value: Any) -> str:
    """Serialize `value` as compact JSON, keeping non-ASCII text as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def load_json(text: str) -> Any:
    """Parse JSON text, or return None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Turn a tool call's JSON-string arguments into an input object.

    Empty or blank arguments mean no arguments. Anything that is not a
    JSON object is kept under RAW_ARGUMENTS_KEY.
    """
    if isinstance(arguments, dict):
        return arguments
    if arguments is None:
        return {}
    if not isinstance(arguments, str):
        return {RAW_ARGUMENTS_KEY: dump_json(arguments)}
    if not arguments.strip():
        return {}
    parsed = load_json(arguments)
    if isinstance(parsed, dict):
        return parsed
    return {RAW_ARGUMENTS_KEY: arguments}


def dump_arguments(tool_input: Any) -> str:
    """Turn a tool input object into JSON-string arguments, undoing parse_arguments."""
    if isinstance(tool_input, dict) and set(tool_input) == {RAW_ARGUMENTS_KEY}:
        raw = tool_input[RAW_ARGUMENTS_KEY]
        if isinstance(raw, str):
            return raw
    return dump_json({} if tool_input is None else tool_input)


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """Frame one named event, the form Anthropic and Responses streams use."""
    return f"event: {name}\ndata: {dump_json(data)}\n\n".encode()


def sse_data(data: dict[str, Any] | str) -> bytes:
    """Frame one unnamed event, the form Chat Completions streams use."""
    text = data if isinstance(data, str) else dump_json(data)
    return f"data: {text}\n\n".encode()


def chat_chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None,
    *,
    include_usage: bool,
) -> bytes:
    """Frame one chat.completion.chunk with a single choice.

    With `include_usage`, the chunk carries "usage": null, as OpenAI's
    chunks do before the usage chunk when the client asked for usage.
    """
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if include_usage:
        chunk["usage"] = None
    return sse_data(chunk)


def token_count(value: Any) -> int:
    """Return a usage count as a non-negative int, or 0 when it is invalid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(int(value), 0)


def takes_reasoning_effort(model: str) -> bool:
    """Return True when `model` names an OpenAI reasoning model family.

    OpenAI defines `reasoning_effort` in Chat Completions for these
    families only: o1, o3, o4-mini, gpt-5 and gpt-oss (open weights that
    Ollama also serves). Other models get no such field. A provider prefix
    such as "openai/" is ignored.
    """
    name = model.rsplit("/", 1)[-1].lower()
    return _REASONING_MODEL.match(name) is not None


def parse_data_url(url: str) -> tuple[str, str] | None:
    """Split a base64 `data:` URL into media type and data, else return None."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    media_type = header[: -len(";base64")].split(";", 1)[0]
    return media_type, data


# -- request checks ---------------------------------------------------------


def require_list(value: Any, path: str, *, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list) or (not value and not allow_empty):
        expected = "a list" if allow_empty else "a non-empty list"
        raise InvalidRequestError(f"{path} must be {expected}, got {_show(value)}")
    return value


def require_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{path} must be an object, got {_show(value)}")
    return value


def require_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{path} must be a string, got {_show(value)}")
    return value


def require_positive_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(
            f"{path} must be a positive integer, got {_show(value)}"
        )
    return value


def require_number(value: Any, path: str) -> float | int:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not valid or not math.isfinite(value):
        raise InvalidRequestError(f"{path} must be a number, got {_show(value)}")
    return value


def unsupported(
    path: str, description: str, upstream: str, fix: str
) -> InvalidRequestError:
    """Build the error for a request part that `upstream` cannot receive."""
    return InvalidRequestError(
        f"{path}: {description} cannot be sent to this tier's {upstream} upstream. "
        f"{fix[:1].upper()}{fix[1:]}."
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
