"""OpenRouter: OpenAI-compatible, with its own attribution headers.

Set `HTTP-Referer` and `X-Title` under the upstream's `headers`. Responses
carry `usage.cost`, the provider's own charge, which is recorded beside
lynkr's computed cost; requests still set `usage.include`, which older
OpenRouter versions needed and current ones accept.
"""

from typing import Any, Mapping

from .base import Provider


class OpenRouter(Provider):
    name = "openrouter"
    apis = frozenset({"openai_chat"})

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        usage = body.get("usage")
        if isinstance(usage, dict) and usage.get("include") is True:
            return body
        return {**body, "usage": {**(usage if isinstance(usage, dict) else {}), "include": True}}


PROVIDER = OpenRouter()
