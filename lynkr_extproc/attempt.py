"""Per-attempt processing for tiers with a fallback chain.

A tier with `fallback` is routed to one Envoy cluster whose endpoints are
its upstreams at increasing priorities; Envoy retries a failed attempt on
the next priority. Envoy re-runs only upstream filters on a retry, so an
ext_proc filter in that cluster's upstream filter chain calls this
processor once per attempt. It reads the tier and the client's API from
the route's metadata and the upstream Envoy picked from the endpoint's
metadata, then translates and authenticates the request for that
provider. The response of the attempt that succeeds (or fails last) carries
`x-lynkr-served-by`, so that the downstream processor meters and
translates the response of the provider that actually served.

Envoy gives every attempt the original body but one shared header map,
so an attempt first removes every header another chain member may have
set (credentials, provider headers) and sets :path afresh.

Budget admission and spend recording stay with the downstream processor:
an attempt keeps no state beyond its own stream.
"""

from __future__ import annotations

import json
import logging
import re

from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc

from . import dispatch, responses
from .config import Config, Tier
from .errors import ClientError, InvalidRequestError, ProtocolError, RequestTooLargeError
from .formats import BY_NAME
from .headers import SERVED_BY_HEADER
from .processor import encode_json, read_request_safely
from .providers import API_PATHS, PROVIDERS

logger = logging.getLogger(__name__)

ATTEMPT_ATTRIBUTE = "xds.upstream_host_metadata"
ROUTE_ATTRIBUTE = "xds.route_metadata"

_METADATA_FIELD = r'key: "{name}"\s*value \{{\s*string_value: "([A-Za-z0-9_.:-]+)"'


def _metadata_field(request: ext_proc.ProcessingRequest, attribute: str, name: str) -> str | None:
    """Read one string field of the `lynkr` filter metadata in an attribute."""
    pattern = re.compile(_METADATA_FIELD.format(name=name))
    for struct in request.attributes.values():
        value = struct.fields.get(attribute)
        if value is not None:
            match = pattern.search(value.string_value)
            return match.group(1) if match else ""
    return None


def attempt_upstream(request: ext_proc.ProcessingRequest) -> str | None:
    """Return the upstream of an attempt's first message, None for a downstream stream."""
    return _metadata_field(request, ATTEMPT_ATTRIBUTE, "upstream")


class AttemptProcessor:
    def __init__(self, config: Config, upstream_name: str, first: ext_proc.ProcessingRequest) -> None:
        self.config = config
        self.upstream_name = upstream_name
        self.tier_name = _metadata_field(first, ROUTE_ATTRIBUTE, "tier") or ""
        self.client_api = _metadata_field(first, ROUTE_ATTRIBUTE, "client_api") or ""
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    async def handle(self, request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        kind = request.WhichOneof("request")
        if kind == "request_headers":
            self._headers = responses.header_map(request.request_headers.headers)
            return responses.request_headers(responses.common())
        if kind == "request_body":
            self._body += request.request_body.body
            if len(self._body) > self.config.max_request_bytes:
                raise RequestTooLargeError(f"request body is larger than {self.config.max_request_bytes} bytes")
            if not request.request_body.end_of_stream:
                return responses.request_body(responses.common())
            return self._prepare()
        if kind == "response_headers":
            return responses.response_headers(
                responses.common(set_headers={SERVED_BY_HEADER: self.upstream_name})
            )
        raise ProtocolError(f"invalid input {kind} for a fallback attempt")

    def _prepare(self) -> ext_proc.ProcessingResponse:
        tier = self.config.tiers.get(self.tier_name)
        pair = tier.model_for(self.upstream_name) if tier is not None else None
        api = BY_NAME.get(self.client_api)
        if tier is None or pair is None or api is None:
            raise InvalidRequestError(
                f"fallback attempt on upstream {self.upstream_name!r} for tier "
                f"{self.tier_name!r} and API {self.client_api!r} is unknown; the Envoy "
                f"config does not match lynkr.yaml, regenerate it with envoy-config"
            )
        upstream, model = pair
        try:
            body = json.loads(bytes(self._body))
        except ValueError as exc:
            raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidRequestError("request body is nested too deeply to read") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("request body must be a JSON object")
        facts = read_request_safely(api, body)
        call, _, _ = dispatch.upstream_call(
            upstream, model, api, body, facts, self._headers,
            include_usage=self.config.inject_stream_usage,
        )
        new_body = encode_json(call.body)
        set_headers = {
            **call.headers,
            ":path": upstream.base_path + (call.path or API_PATHS[call.api]),
            "content-length": str(len(new_body)),
        }
        stale = _chain_headers(tier) - set(set_headers)
        return responses.request_body(
            responses.common(
                set_headers=set_headers,
                remove=sorted(stale | set(call.remove_headers)),
                body=new_body,
            )
        )


def _chain_headers(tier: Tier) -> set[str]:
    """Return every header a member of the chain sets, so others can remove it."""
    names: set[str] = set()
    for upstream, _ in tier.attempts():
        provider = PROVIDERS[upstream.provider]
        names.add(provider.auth_header)
        names.update(name for name, _ in provider.default_headers)
        names.update(upstream.headers)
    return names


def attempt_error(error: ClientError) -> ext_proc.ProcessingResponse:
    """Fail one attempt with the error's status; Envoy may retry the next upstream."""
    return responses.immediate(error, "openai")
