"""Wire API formats, chosen by request path."""

from __future__ import annotations

from types import ModuleType

from . import anthropic_messages, openai_chat, openai_responses

_BY_PATH: dict[str, ModuleType] = {
    "/v1/chat/completions": openai_chat,
    "/chat/completions": openai_chat,
    "/v1/messages": anthropic_messages,
    "/v1/responses": openai_responses,
    "/responses": openai_responses,
}

BY_NAME: dict[str, ModuleType] = {
    module.name: module for module in (openai_chat, anthropic_messages, openai_responses)
}


def format_for_path(path: str) -> ModuleType | None:
    """Return the format module of an LLM API path, ignoring the query."""
    return _BY_PATH.get(path.partition("?")[0].rstrip("/"))
