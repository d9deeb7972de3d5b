"""The provider adapter interface, which builds the upstream request of one call."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

API_PATHS = {
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
    "anthropic_messages": "/v1/messages",
    "ollama_chat": "/api/chat",
    "ollama_generate": "/api/generate",
}


@dataclass(frozen=True)
class UpstreamTarget:
    """Upstream settings from config that a provider adapter reads."""

    name: str
    provider: str
    credential: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    """Static headers from config, such as OpenRouter's HTTP-Referer."""
    api_version: str | None = None
    auth: str = "key"
    """"key" (the credential in the provider's header) or "sigv4" (signed by Envoy)."""


@dataclass
class UpstreamCall:
    """The request sent to the upstream for one call."""

    api: str
    """The API of the body sent and of the response, e.g. "openai_chat"."""
    body: dict[str, Any]
    path: str | None = None
    """The new :path, or None to keep the client's path and query."""
    headers: dict[str, str] = field(default_factory=dict)
    remove_headers: tuple[str, ...] = ()
    """Client headers of another API that must not reach this upstream."""
    response_framing: str = "sse"
    """"sse", or "eventstream" when the upstream streams AWS event stream frames."""


class Provider:
    """An upstream provider: the APIs it accepts and how to call them.

    Subclasses override `path`, `auth_headers` and `shape_body` where the
    provider differs from plain OpenAI-style HTTP.
    """

    name = "openai"
    apis: frozenset[str] = frozenset({"openai_chat", "openai_responses"})
    preferred_api = "openai_chat"
    """The API requests are translated into when the client's is not accepted."""
    auth_header = "authorization"
    auth_prefix = "Bearer "
    default_headers: tuple[tuple[str, str], ...] = ()

    def target_api(self, client_api: str) -> str:
        return client_api if client_api in self.apis else self.preferred_api

    def build(
        self,
        target: UpstreamTarget,
        api: str,
        body: dict[str, Any],
        *,
        model: str,
        stream: bool,
        client_api: str,
        client_headers: Mapping[str, str],
    ) -> UpstreamCall:
        """Return the upstream call for a body already in `api` with `model` set."""
        headers = {name: value for name, value in self.default_headers if name not in client_headers}
        headers.update(target.headers)
        headers.update(self.auth_headers(target))
        path = self.path(target, api, model=model, stream=stream)
        if path is None and api != client_api:
            path = API_PATHS[api]
        return UpstreamCall(
            api=api,
            body=self.shape_body(api, body, stream=stream, client_headers=client_headers),
            path=path,
            headers=headers,
            remove_headers=self.foreign_headers(api, client_headers),
            response_framing=self.response_framing(stream),
        )

    def foreign_headers(self, api: str, client_headers: Mapping[str, str]) -> tuple[str, ...]:
        """Return client headers that belong to another provider's API."""
        if api == "anthropic_messages" and self.name == "anthropic":
            prefixes: tuple[str, ...] = ("openai-",)
        elif api == "anthropic_messages":
            prefixes = ("openai-", "anthropic-")
        else:
            prefixes = ("anthropic-",)
        return tuple(name for name in client_headers if name.startswith(prefixes))

    def auth_headers(self, target: UpstreamTarget) -> dict[str, str]:
        if not target.credential or target.auth != "key":
            return {}
        return {self.auth_header: self.auth_prefix + target.credential}

    def path(self, target: UpstreamTarget, api: str, *, model: str, stream: bool) -> str | None:
        """Return the upstream path, or None to keep the client's when the API is the same."""
        return None

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        return body

    def response_framing(self, stream: bool) -> str:
        return "sse"


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """Return a shallow copy of `body` without the named fields."""
    shaped = copy.copy(body)
    for name in names:
        shaped.pop(name, None)
    return shaped
