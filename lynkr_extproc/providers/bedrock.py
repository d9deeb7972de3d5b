"""AWS Bedrock InvokeModel for Anthropic models.

The body is Anthropic Messages without `model` and `stream`, with
`anthropic_version: bedrock-2023-05-31`; `anthropic-beta` header values go
into the body's `anthropic_beta` list. The model id is in the path:
/model/{id}/invoke, or /model/{id}/invoke-with-response-stream, whose
response is an AWS event stream of `chunk` events wrapping the Anthropic
events, re-framed as server-sent events for the client.

Authentication: a Bedrock API key as a bearer token (`api_key_env`), or
`auth: sigv4`, where Envoy's aws_request_signing filter on the upstream's
cluster signs each request with the credentials of its environment.
"""

from typing import Any, Mapping
from urllib.parse import quote

from .base import Provider, UpstreamTarget, without

ANTHROPIC_VERSION = "bedrock-2023-05-31"


class Bedrock(Provider):
    name = "bedrock"
    apis = frozenset({"anthropic_messages"})
    preferred_api = "anthropic_messages"

    def path(self, target: UpstreamTarget, api: str, *, model: str, stream: bool) -> str:
        action = "invoke-with-response-stream" if stream else "invoke"
        return f"/model/{quote(model, safe='')}/{action}"

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        shaped = without(body, "model", "stream")
        shaped.setdefault("anthropic_version", ANTHROPIC_VERSION)
        betas = [b.strip() for b in client_headers.get("anthropic-beta", "").split(",") if b.strip()]
        if betas and "anthropic_beta" not in shaped:
            shaped["anthropic_beta"] = betas
        return shaped

    def response_framing(self, stream: bool) -> str:
        return "eventstream" if stream else "sse"


PROVIDER = Bedrock()
