"""Anthropic Messages response -> OpenAI Chat Completions response.

Thinking blocks are dropped: Chat Completions has no standard field for
reasoning text. Blocks of Anthropic server tools cannot occur, because
the request translation sends no server tools.
"""

from __future__ import annotations

from typing import Any

from .._common import derive_id, dump_arguments, token_count
from .._errors import error_message, error_type, openai_error, openai_error_type

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def completion_id(upstream_id: Any) -> str:
    """Return the chat completion id for an Anthropic message id."""
    return derive_id("chatcmpl-", upstream_id)


def finish_reason(stop_reason: Any) -> str:
    """Map an Anthropic stop_reason to a chat finish_reason."""
    return FINISH_REASONS.get(stop_reason, "stop")


def usage(raw: Any) -> dict[str, Any]:
    """Map Anthropic usage to chat usage.

    Chat's prompt_tokens counts every input token, so it is the sum of
    Anthropic's uncached, cache-read and cache-write counts. Cache reads
    also appear as cached_tokens, and chat has no field for cache writes.
    """
    raw = raw if isinstance(raw, dict) else {}
    cache_read = token_count(raw.get("cache_read_input_tokens"))
    cache_write = token_count(raw.get("cache_creation_input_tokens"))
    prompt = token_count(raw.get("input_tokens")) + cache_read + cache_write
    completion = token_count(raw.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def translate_response(document: dict[str, Any], *, created: int) -> dict[str, Any]:
    """Translate an Anthropic message body into a chat.completion body."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    content = document.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(block))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(document.get("stop_reason")),
        "logprobs": None,
    }
    return {
        "id": completion_id(document.get("id", "")),
        "object": "chat.completion",
        "created": created,
        "model": document.get("model", ""),
        "choices": [choice],
        "usage": usage(document.get("usage")),
    }


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(block.get("name") or ""),
            "arguments": dump_arguments(block.get("input")),
        },
    }


def translate_error(status: int, document: object) -> dict[str, Any]:
    """Translate an upstream error body into an OpenAI error body.

    Anthropic's own error type (rate_limit_error, overloaded_error, ...)
    is kept as the OpenAI type and code, which OpenAI clients show as is.
    """
    kind = error_type(document)
    message = error_message(status, document)
    if kind is None:
        return openai_error(openai_error_type(status), message)
    return openai_error(kind, message, code=kind)
