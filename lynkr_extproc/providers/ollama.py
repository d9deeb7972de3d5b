"""Ollama: its OpenAI-compatible /v1 API and the native /api/chat and /api/generate."""

from .base import Provider


class Ollama(Provider):
    name = "ollama"
    apis = frozenset({"openai_chat", "ollama_chat", "ollama_generate"})


PROVIDER = Ollama()
