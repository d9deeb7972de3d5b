"""Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=…

The tier's model is the deployment name, the key goes in `api-key`, and
`api_version` in the upstream's config picks the API version.
"""

from typing import Any, Mapping
from urllib.parse import quote

from .base import Provider, UpstreamTarget, without

DEFAULT_API_VERSION = "2024-10-21"


class Azure(Provider):
    name = "azure"
    apis = frozenset({"openai_chat"})
    auth_header = "api-key"
    auth_prefix = ""

    def path(self, target: UpstreamTarget, api: str, *, model: str, stream: bool) -> str:
        version = quote(target.api_version or DEFAULT_API_VERSION, safe="")
        return f"/openai/deployments/{quote(model, safe='')}/chat/completions?api-version={version}"

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        return without(body, "model")


PROVIDER = Azure()
