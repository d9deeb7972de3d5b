"""Anthropic Messages: `x-api-key` and `anthropic-version`."""

from .base import Provider


class Anthropic(Provider):
    name = "anthropic"
    apis = frozenset({"anthropic_messages"})
    preferred_api = "anthropic_messages"
    auth_header = "x-api-key"
    auth_prefix = ""
    default_headers = (("anthropic-version", "2023-06-01"),)


PROVIDER = Anthropic()
