"""Wire API formats, chosen by request path."""

from __future__ import annotations

from typing import Any

from . import anthropic_messages, bedrock_converse, ollama, openai_chat, openai_responses

_BY_PATH: dict[str, Any] = {
    "/v1/chat/completions": openai_chat,
    "/chat/completions": openai_chat,
    "/v1/messages": anthropic_messages,
    "/v1/responses": openai_responses,
    "/responses": openai_responses,
    "/api/chat": ollama.chat,
    "/api/generate": ollama.generate,
}

BY_NAME: dict[str, Any] = {
    api.name: api
    for api in (
        openai_chat, anthropic_messages, openai_responses, ollama.chat, ollama.generate,
        bedrock_converse,
    )
}


BY_PATH_API_NAMES: tuple[str, ...] = tuple(dict.fromkeys(api.name for api in _BY_PATH.values()))
"""Every API a client can call, in path order."""


def format_for_path(path: str) -> Any:
    """Return the format of an LLM API path, ignoring the query, or None."""
    return _BY_PATH.get(path.partition("?")[0].rstrip("/"))
