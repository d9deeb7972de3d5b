"""OpenAI Chat Completions response -> Anthropic Messages response.

Reasoning text that some chat servers return is dropped: llama.cpp and
LM Studio send it as `reasoning_content`, Ollama as `reasoning`. An
Anthropic thinking block needs a signature that only Anthropic can make,
and the client would send the block back in its next request.
"""

from __future__ import annotations

from typing import Any

from .._common import derive_id, parse_arguments, token_count
from .._errors import anthropic_error, anthropic_error_type, error_message

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(upstream_id: Any) -> str:
    """Return the Anthropic message id for a chat completion id."""
    return derive_id("msg_", upstream_id)


def tool_use_id(upstream_id: Any, index: int) -> str:
    """Return an id for a tool call that the upstream sent without one."""
    return derive_id("toolu_", upstream_id, index)


def stop_reason(finish_reason: Any, *, has_tool_calls: bool) -> str:
    """Map a chat finish_reason to an Anthropic stop_reason.

    A response with tool calls ends in tool_use whatever its finish_reason,
    because some servers report "stop" after a tool call.
    """
    if has_tool_calls:
        return "tool_use"
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage(raw: Any) -> dict[str, int]:
    """Map chat usage to Anthropic usage.

    prompt_tokens includes the cached tokens, which Anthropic counts apart
    in cache_read_input_tokens. Chat reports no cache writes.
    """
    raw = raw if isinstance(raw, dict) else {}
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt = token_count(raw.get("prompt_tokens"))
    cached = min(token_count(details.get("cached_tokens")), prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": token_count(raw.get("completion_tokens")),
    }


def translate_response(document: dict[str, Any]) -> dict[str, Any]:
    """Translate a chat.completion body into an Anthropic message body."""
    upstream_id = document.get("id", "")
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content = _text_blocks(message)
    calls = message.get("tool_calls")
    calls = calls if isinstance(calls, list) else []
    for index, call in enumerate(calls):
        if isinstance(call, dict):
            content.append(_tool_use(call, upstream_id, index))
    reason = stop_reason(choice.get("finish_reason"), has_tool_calls=bool(calls))
    return {
        "id": message_id(upstream_id),
        "type": "message",
        "role": "assistant",
        "model": document.get("model", ""),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": usage(document.get("usage")),
    }


def _text_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    texts = []
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    refusal = message.get("refusal")
    if isinstance(refusal, str):
        texts.append(refusal)
    return [{"type": "text", "text": text} for text in texts if text]


def _tool_use(call: dict[str, Any], upstream_id: Any, index: int) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = tool_use_id(upstream_id, index)
    return {
        "type": "tool_use",
        "id": call_id,
        "name": str(function.get("name") or ""),
        "input": parse_arguments(function.get("arguments")),
    }


def translate_error(status: int, document: object) -> dict[str, Any]:
    """Translate an upstream error body into an Anthropic error body."""
    return anthropic_error(
        anthropic_error_type(status), error_message(status, document)
    )
