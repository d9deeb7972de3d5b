"""Turn an admitted request into the call its upstream expects.

The client's body is translated into the upstream provider's API when the
provider does not accept the client's (Claude Code on an Ollama tier), and
the provider adapter then sets the path, credential and provider fields.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping

from .config import Upstream
from .errors import InvalidRequestError
from .formats import BY_NAME
from .formats.base import RequestFacts
from .providers import PROVIDERS, UpstreamCall
from .translate import SUPPORTED_PAIRS, Translation, translation_for


def can_serve(upstream: Upstream, client_api: str) -> bool:
    """Return True when the upstream accepts the API, directly or translated."""
    api = PROVIDERS[upstream.provider].target_api(client_api)
    return api == client_api or (client_api, api) in SUPPORTED_PAIRS


def upstream_call(
    upstream: Upstream,
    model: str,
    client_api: ModuleType,
    body: dict[str, Any],
    facts: RequestFacts,
    client_headers: Mapping[str, str],
    *,
    include_usage: bool,
) -> tuple[UpstreamCall, ModuleType, Translation | None]:
    """Return the upstream call, the upstream's API format and the translation used."""
    provider = PROVIDERS[upstream.provider]
    api = provider.target_api(client_api.name)
    translation = None
    if api == client_api.name:
        shaped = client_api.prepare_upstream(body, model=model, include_usage=include_usage)
    else:
        if (client_api.name, api) not in SUPPORTED_PAIRS:
            raise InvalidRequestError(
                f"upstream {upstream.name!r} ({upstream.provider}) accepts {', '.join(sorted(provider.apis))}, "
                f"and {client_api.name} requests cannot be translated to {api}"
            )
        translation = translation_for(client_api.name, api)
        assert translation is not None
        shaped = translation.request(body, model=model)
    call = provider.build(
        upstream.target(),
        api,
        shaped,
        model=model,
        stream=facts.stream,
        client_api=client_api.name,
        client_headers=client_headers,
    )
    return call, BY_NAME[api], translation


def response_translation(upstream: Upstream, client_api: Any) -> tuple[Any, Translation | None]:
    """Return the API an upstream answers a client's request in, and the translation back."""
    api = PROVIDERS[upstream.provider].target_api(client_api.name)
    if api == client_api.name:
        return client_api, None
    return BY_NAME[api], translation_for(client_api.name, api)
