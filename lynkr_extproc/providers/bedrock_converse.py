"""AWS Bedrock Converse and ConverseStream, for the models that Converse serves.

The body is a Converse request, which carries no model and no stream
field: the model id is in the path, /model/{id}/converse, or
/model/{id}/converse-stream when streaming. ConverseStream responds in
the AWS event stream framing, which the response reader decodes.
Clients of the other APIs reach this provider through a translation.

Authentication is the same as for the `bedrock` provider: a Bedrock API
key as a bearer token (`api_key_env`), or `auth: sigv4`, where Envoy's
aws_request_signing filter on the upstream's cluster signs each request
with the credentials of its environment.
"""

from typing import Any, Mapping
from urllib.parse import quote

from .base import Provider, UpstreamTarget, without


class BedrockConverse(Provider):
    name = "bedrock_converse"
    apis = frozenset({"bedrock_converse"})
    preferred_api = "bedrock_converse"

    def path(self, target: UpstreamTarget, api: str, *, model: str, stream: bool) -> str:
        action = "converse-stream" if stream else "converse"
        return f"/model/{quote(model, safe='')}/{action}"

    def shape_body(
        self, api: str, body: dict[str, Any], *, stream: bool, client_headers: Mapping[str, str]
    ) -> dict[str, Any]:
        return without(body, "model", "stream")

    def foreign_headers(self, api: str, client_headers: Mapping[str, str]) -> tuple[str, ...]:
        """Return the OpenAI and Anthropic client headers, which Converse does not read."""
        prefixes = ("openai-", "anthropic-")
        return tuple(name for name in client_headers if name.startswith(prefixes))

    def response_framing(self, stream: bool) -> str:
        return "eventstream" if stream else "sse"


PROVIDER = BedrockConverse()
