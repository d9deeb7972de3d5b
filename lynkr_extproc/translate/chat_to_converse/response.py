"""Bedrock Converse response -> OpenAI Chat Completions response.

A Converse response carries no id and no model, so the completion id
comes from the translation and the model is the one the request named.
Reasoning text (`reasoningContent.reasoningText.text`) becomes the chat
message's `reasoning_content`, the field that llama.cpp, vLLM and
DeepSeek use for reasoning in chat responses. Its signature and redacted
reasoning are dropped, since a chat client cannot send them back.
"""

from __future__ import annotations

from typing import Any

from .._common import dump_arguments, token_count
from .._errors import error_message, openai_error, openai_error_type

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
"""Converse stopReason -> chat finish_reason. Other reasons become "stop"."""

EXCEPTION_TYPES = {
    "throttlingException": "rate_limit_exceeded",
    "serviceQuotaExceededException": "rate_limit_exceeded",
    "validationException": "invalid_request_error",
    "accessDeniedException": "permission_error",
    "resourceNotFoundException": "not_found_error",
    "modelTimeoutException": "timeout",
}
"""Bedrock exception name -> OpenAI error type. Others become "server_error"."""


def finish_reason(stop_reason: Any) -> str:
    """Map a Converse stopReason to a chat finish_reason."""
    return FINISH_REASONS.get(stop_reason, "stop")


def usage(raw: Any) -> dict[str, Any]:
    """Map Converse usage to chat usage.

    Converse's inputTokens excludes cache reads and writes, where chat's
    prompt_tokens counts every input token, so prompt_tokens is the sum
    of the three. Cache reads also appear as cached_tokens, and chat has
    no field for cache writes.
    """
    raw = raw if isinstance(raw, dict) else {}
    cache_read = token_count(raw.get("cacheReadInputTokens"))
    cache_write = token_count(raw.get("cacheWriteInputTokens"))
    prompt = token_count(raw.get("inputTokens")) + cache_read + cache_write
    completion = token_count(raw.get("outputTokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def translate_response(
    document: dict[str, Any], *, completion_id: str, model: str, created: int
) -> dict[str, Any]:
    """Translate a Converse response body into a chat.completion body."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in _content_blocks(document):
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            calls.append(_tool_call(block["toolUse"]))
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning.append(_reasoning_text(block["reasoningContent"]))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(document.get("stopReason")),
        "logprobs": None,
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(document.get("usage")),
    }


def _content_blocks(document: dict[str, Any]) -> list[dict[str, Any]]:
    output = document.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict)]


def _reasoning_text(reasoning: dict[str, Any]) -> str:
    text_block = reasoning.get("reasoningText")
    text = text_block.get("text") if isinstance(text_block, dict) else None
    return text if isinstance(text, str) else ""


def _tool_call(tool_use: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(tool_use.get("toolUseId") or ""),
        "type": "function",
        "function": {
            "name": str(tool_use.get("name") or ""),
            "arguments": dump_arguments(tool_use.get("input")),
        },
    }


def translate_error(status: int, document: object) -> dict[str, Any]:
    """Translate a Bedrock error body into an OpenAI error body.

    Bedrock sends `{"message": "..."}`, and AWS's front end sends
    `{"Message": "..."}` for some authentication errors.
    """
    if isinstance(document, dict) and isinstance(document.get("Message"), str):
        document = {"message": document["Message"], **document}
    return openai_error(openai_error_type(status), error_message(status, document))


def exception_error(exception: str, message: str) -> dict[str, Any]:
    """Build the OpenAI error for a Bedrock exception event in a stream.

    `exception` is the event's exception type, such as throttlingException,
    which is kept as the error code.
    """
    kind = EXCEPTION_TYPES.get(exception, "server_error")
    return openai_error(kind, message, code=exception or None)
