"""The llama.cpp server: OpenAI Chat Completions, optional bearer key.

It sends no usage in streamed responses even when asked, so streamed
spend is estimated; buffered responses carry usage (and a `timings`
object that is ignored).
"""

from .base import Provider


class LlamaCpp(Provider):
    name = "llamacpp"
    apis = frozenset({"openai_chat"})


PROVIDER = LlamaCpp()
