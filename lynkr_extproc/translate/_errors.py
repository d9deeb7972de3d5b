"""Upstream error bodies of any shape, rewritten for the client's API.

Upstreams send errors as OpenAI `{"error": {"message", "type", ...}}`,
Anthropic `{"type": "error", "error": {"type", "message"}}`, Ollama
`{"error": "text"}`, FastAPI `{"detail": ...}`, or plain text, which the
caller passes as a str.
"""

from __future__ import annotations

from typing import Any

from ._common import dump_json

MAX_MESSAGE_CHARS = 2000
"""Longer upstream messages (an HTML error page, say) are cut to this size."""

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def error_message(status: int, document: object) -> str:
    """Return the human-readable message of an upstream error body."""
    message = _find_message(document)
    if not message:
        message = f"the upstream returned HTTP {status} with no error message"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message


def error_type(document: object) -> str | None:
    """Return the upstream's own error type string, if the body has one."""
    if not isinstance(document, dict):
        return None
    inner = document.get("error")
    if isinstance(inner, dict) and isinstance(inner.get("type"), str):
        return inner["type"]
    return None


def anthropic_error_type(status: int) -> str:
    """Return the Anthropic error type for an HTTP status."""
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def openai_error_type(status: int) -> str:
    """Return an OpenAI-style error type for an HTTP status."""
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """Build an Anthropic error body, also the data of a stream `error` event."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error(kind: str, message: str, *, code: str | None = None) -> dict[str, Any]:
    """Build an OpenAI error body, also the data of an error chunk in a stream."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _find_message(document: object) -> str:
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    if isinstance(document, str):
        return document.strip()
    if not isinstance(document, dict):
        return "" if document is None else dump_json(document)
    inner = document.get("error")
    if isinstance(inner, dict):
        message = inner.get("message")
        if isinstance(message, str) and message:
            return message
        return dump_json(inner)
    if isinstance(inner, str) and inner:
        return inner
    for key in ("message", "detail"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
        if value:
            return dump_json(value)
    return dump_json(document) if document else ""
