"""OpenAI: Chat Completions and Responses, bearer token."""

from .base import Provider


class OpenAI(Provider):
    name = "openai"


PROVIDER = OpenAI()
