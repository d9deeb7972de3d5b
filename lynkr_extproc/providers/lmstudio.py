"""LM Studio's server: OpenAI Chat Completions, no key required."""

from .base import Provider


class LMStudio(Provider):
    name = "lmstudio"
    apis = frozenset({"openai_chat"})


PROVIDER = LMStudio()
