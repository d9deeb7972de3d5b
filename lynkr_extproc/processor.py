"""The per-stream ext_proc state machine.

One `StreamProcessor` handles one HTTP request. Envoy sends, in order:
request headers, the buffered request body, response headers, then the
response body (one buffered message for JSON, many for a stream). Each
(state, message) pair has one handler in `_HANDLERS`; any other pair is a
protocol error that closes the stream.

Spend is recorded exactly once per stream: when the response body ends,
or, if the stream is cut first, by `finish()`, which the server calls
however the gRPC stream ends.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, Awaitable, Callable

from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc

from . import codecs, responses
from .config import PROVIDERS
from .errors import ClientError, InvalidRequestError, RequestTooLargeError, StoreError
from .formats import format_for_path
from .gateway import Admission, Gateway, Tenant
from .money import format_usd, nanos_to_usd
from .pricing import Usage
from .sse import SSEDecoder

logger = logging.getLogger(__name__)

ROUTING_HEADER = "x-lynkr-upstream"
CLIENT_KEY_HEADERS = ("authorization", "x-api-key", "api-key")
MAX_RESPONSE_JSON_BYTES = 64 * 1024 * 1024


class ProtocolError(Exception):
    """Envoy sent a message that the current state does not expect."""


class State(enum.Enum):
    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"
    DONE = "done"


@dataclass
class _Response:
    """State the response phases collect about the upstream's response."""

    status: int = 0
    streaming: bool = False
    decoder: codecs.Decoder | None = None
    sse: SSEDecoder | None = None
    meter: Any = None
    strip_usage: bool = False
    json_body: bytearray = field(default_factory=bytearray)
    json_overflow: bool = False


class StreamProcessor:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.state = State.REQUEST_HEADERS
        self.request_id = ""
        self.started: datetime = gateway.clock()
        self._headers: dict[str, str] = {}
        self._api: ModuleType | None = None
        self._tenant: Tenant | None = None
        self._body = bytearray()
        self._facts: Any = None
        self._admission: Admission | None = None
        self._response = _Response()
        self._settled = False

    async def handle(self, request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        """Process one message from Envoy and return the reply."""
        kind = request.WhichOneof("request")
        handler = _HANDLERS.get((self.state, kind))
        if handler is None:
            raise ProtocolError(f"invalid input {kind} in state {self.state.value}")
        return await handler(self, getattr(request, kind))

    # -- request headers ---------------------------------------------------

    async def _on_request_headers(self, message: ext_proc.HttpHeaders) -> ext_proc.ProcessingResponse:
        headers = _header_map(message.headers)
        self._headers = headers
        self.request_id = headers.get("x-request-id") or uuid.uuid4().hex
        removed = _client_routing_headers(headers)
        path = headers.get(":path", "")
        api = format_for_path(path) if headers.get(":method") == "POST" else None
        style = api.error_style if api else "openai"
        try:
            tenant = self.gateway.authenticate(headers)
        except ClientError as error:
            return self._reject(error, style)
        self._tenant = tenant
        if api is None:
            return self._pass_through(removed)
        if message.end_of_stream:
            return self._reject(InvalidRequestError("the request has no body"), style)
        self._api = api
        self.state = State.REQUEST_BODY
        return responses.request_headers(
            responses.common(remove=[*removed, "accept-encoding"], clear_route_cache=True)
        )

    def _pass_through(self, removed: list[str]) -> ext_proc.ProcessingResponse:
        """Route a non-LLM call (model lists, token counting) without its bodies.

        It goes to the default tier, or to the first tier whose upstream
        speaks the path's API when the default's does not, so that
        /v1/messages/count_tokens reaches an Anthropic upstream.
        """
        tier = self.gateway.pass_through_tier(self._headers.get(":path", ""))
        self.state = State.DONE
        return responses.request_headers(
            responses.common(
                set_headers={ROUTING_HEADER: tier.upstream.name, **_credential_headers(tier.upstream, self._headers)},
                remove=removed,
                clear_route_cache=True,
            ),
            responses.PASS_THROUGH,
        )

    # -- request body ------------------------------------------------------

    async def _on_request_body(self, message: ext_proc.HttpBody) -> ext_proc.ProcessingResponse:
        api = self._api
        assert api is not None and self._tenant is not None
        self._body += message.body
        if len(self._body) > self.gateway.config.max_request_bytes:
            return self._reject(
                RequestTooLargeError(
                    f"request body is larger than {self.gateway.config.max_request_bytes} bytes"
                ),
                api.error_style,
            )
        if not message.end_of_stream:
            return responses.request_body(responses.common())
        try:
            return await self._admit(api, self._tenant)
        except ClientError as error:
            return self._reject(error, api.error_style)

    async def _admit(self, api: ModuleType, tenant: Tenant) -> ext_proc.ProcessingResponse:
        body = _parse_json_object(bytes(self._body))
        facts = api.read_request(body)
        self._facts = facts
        chosen = await self.gateway.route(tenant, api.name, facts, self._headers)
        admission = await self.gateway.admit_with_downgrade(tenant, chosen, facts, api.name)
        self._admission = admission
        route = admission.route
        config = self.gateway.config
        prepared = api.prepare_upstream(body, model=route.model, include_usage=config.inject_stream_usage)
        set_headers = {ROUTING_HEADER: route.upstream.name, **_credential_headers(route.upstream, self._headers)}
        new_body = None
        if prepared != body:
            new_body = json.dumps(prepared, ensure_ascii=False, separators=(",", ":")).encode()
            set_headers["content-length"] = str(len(new_body))
        self._response.strip_usage = (
            facts.stream
            and config.inject_stream_usage
            and not config.forward_usage_chunk
            and not facts.client_wants_usage
            and api.name == "openai_chat"
        )
        self.state = State.RESPONSE_HEADERS
        return responses.request_body(
            responses.common(set_headers=set_headers, body=new_body, clear_route_cache=True)
        )

    # -- response headers --------------------------------------------------

    async def _on_response_headers(self, message: ext_proc.HttpHeaders) -> ext_proc.ProcessingResponse:
        headers = _header_map(message.headers)
        admission = self._admission
        assert admission is not None and self._api is not None
        response = self._response
        response.status = _int_or_zero(headers.get(":status"))
        content_type = headers.get("content-type", "").lower()
        response.streaming = content_type.startswith("text/event-stream")
        encoding = headers.get("content-encoding", "")
        response.decoder = codecs.decoder_for(encoding)
        if response.decoder is None:
            logger.warning("request %s: unsupported content-encoding %r, usage will be estimated", self.request_id, encoding)
        if encoding.strip().lower() not in ("", "identity"):
            response.strip_usage = False
        if response.streaming:
            response.sse = SSEDecoder(keep_raw=response.strip_usage)
            response.meter = self._api.new_meter()
        route = admission.route
        added = {
            "x-lynkr-tier": route.tier,
            "x-lynkr-model": route.model,
            "x-lynkr-routing-reason": route.reason,
        }
        if admission.reservation.remaining_nanos is not None:
            added["x-lynkr-budget-remaining-usd"] = format_usd(admission.reservation.remaining_nanos, 6)
        reply = responses.common(set_headers=added)
        if message.end_of_stream:
            await self._settle(outcome_hint="completed")
            self.state = State.DONE
            return responses.response_headers(reply)
        self.state = State.RESPONSE_BODY
        mode = responses.STREAM_RESPONSE if response.streaming else responses.BUFFER_RESPONSE
        return responses.response_headers(reply, mode)

    # -- response body -----------------------------------------------------

    async def _on_response_body(self, message: ext_proc.HttpBody) -> ext_proc.ProcessingResponse:
        response = self._response
        chunk = message.body
        plain = self._decode(chunk)
        mutation = None
        if response.streaming:
            mutation = self._meter_stream(plain, end=message.end_of_stream)
        elif plain:
            if len(response.json_body) + len(plain) > MAX_RESPONSE_JSON_BYTES:
                response.json_overflow = True
            elif not response.json_overflow:
                response.json_body += plain
        if message.end_of_stream:
            await self._settle(outcome_hint="completed")
            self.state = State.DONE
        return responses.response_body(responses.common(body=mutation))

    def _decode(self, chunk: bytes) -> bytes:
        decoder = self._response.decoder
        if decoder is None or not chunk:
            return b"" if decoder is None else chunk
        try:
            return decoder.decompress(chunk)
        except Exception as exc:  # any codec error: keep forwarding, estimate usage
            logger.warning("request %s: response body cannot be decoded: %s", self.request_id, exc)
            self._response.decoder = None
            return b""

    def _meter_stream(self, chunk: bytes, *, end: bool) -> bytes | None:
        response = self._response
        sse, meter = response.sse, response.meter
        assert sse is not None and meter is not None
        kept: list[bytes] = []
        for event, raw in sse.feed_blocks(chunk):
            if event is not None:
                meter.feed(event)
                if response.strip_usage and meter.is_usage_only(event):
                    continue
            kept.append(raw)
        if end:
            kept.append(sse.close())
        if not response.strip_usage:
            return None
        return b"".join(kept)

    # -- trailers ----------------------------------------------------------

    async def _on_trailers(self, message: Any) -> ext_proc.ProcessingResponse:
        kind = "request_trailers" if self.state in (State.REQUEST_BODY,) else "response_trailers"
        return responses.trailers_response(kind)

    # -- ending ------------------------------------------------------------

    def _reject(self, error: ClientError, style: str) -> ext_proc.ProcessingResponse:
        self.state = State.DONE
        tenant = self._tenant
        logger.info(
            "request %s rejected status=%d type=%s key=%s team=%s reason=%r",
            self.request_id or "-",
            error.status,
            error.error_type,
            tenant.key.id if tenant else "-",
            tenant.key.team if tenant else "-",
            error.message,
        )
        return responses.immediate(error, style)

    async def finish(self) -> None:
        """Record spend if the stream ended before the response did."""
        if self._admission is not None and not self._settled:
            await self._settle(outcome_hint="partial")

    async def _settle(self, *, outcome_hint: str) -> None:
        if self._settled:
            return
        self._settled = True
        admission, tenant = self._admission, self._tenant
        assert admission is not None and tenant is not None
        usage, source, outcome, flags = self._final_usage(outcome_hint)
        record = self.gateway.record(
            request_id=self.request_id,
            tenant=tenant,
            admission=admission,
            usage=usage,
            usage_source=source,
            status=self._response.status,
            outcome=outcome,
            started=self.started,
            flags=flags,
        )
        try:
            # Shielded: a stream cancelled while its record is being written
            # must not cancel the write.
            written = await asyncio.shield(self.gateway.store.settle(admission.reservation, record))
        except StoreError as exc:
            # NOTE: without the durable outbox of the Redis/PostgreSQL
            # backends, a record that fails here is lost; the hold expires.
            logger.error("request %s: spend record failed: %s", self.request_id, exc)
            return
        log = logger.info if written else logger.warning
        log(
            "request %s %s key=%s team=%s customer=%s org=%s tier=%s model=%s "
            "status=%d tokens_in=%d tokens_out=%d cache_read=%d cache_write=%d "
            "cost_usd=%s usage=%s flags=%s%s",
            self.request_id,
            outcome,
            record.key_id,
            record.team,
            record.customer or "-",
            record.org,
            record.tier,
            record.model,
            record.status,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            _usd(record.cost_nanos),
            source,
            ",".join(record.flags) or "-",
            "" if written else " (duplicate request id, not charged again)",
        )

    def _final_usage(self, outcome_hint: str) -> tuple[Usage, str, str, set[str]]:
        """Decide the usage to charge: reported, or estimated from text seen."""
        response = self._response
        flags: set[str] = set()
        reported, finished, failed, text_chars = self._observed(flags)
        if response.status == 0:
            return Usage(), "estimated", "aborted", flags | {"no_response"}
        failed = failed or response.status >= 400
        cut = outcome_hint == "partial" and not finished
        if reported is not None and not cut:
            return reported, "reported", "failed" if failed else "completed", flags
        if reported is None and (failed or (finished and failed)):
            flags.add("no_usage_reported")
            return Usage(), "reported", "failed", flags
        estimated_output = math.ceil(text_chars / 4)
        if reported is not None:
            usage = Usage(
                input_tokens=reported.input_tokens,
                cache_read_tokens=reported.cache_read_tokens,
                cache_write_tokens=reported.cache_write_tokens,
                output_tokens=max(reported.output_tokens, estimated_output),
                reasoning_tokens=reported.reasoning_tokens,
            )
        else:
            flags.add("usage_missing")
            assert self._admission is not None
            usage = Usage(input_tokens=self._admission.input_estimate, output_tokens=estimated_output)
        return usage, "estimated", "partial" if cut else "completed", flags

    def _observed(self, flags: set[str]) -> tuple[Usage | None, bool, bool, int]:
        response = self._response
        api = self._api
        assert api is not None
        if response.streaming and response.meter is not None:
            meter = response.meter
            flags.update(meter.flags)
            return meter.usage, meter.finished, meter.failed, meter.text_chars
        if response.json_overflow or not response.json_body:
            return None, bool(response.json_body), False, 0
        try:
            document = json.loads(response.json_body)
        except ValueError:
            flags.add("unparsable_response")
            return None, True, False, len(response.json_body) // 2
        usage = api.usage_from_json(document, flags)
        return usage, True, False, api.text_chars_from_json(document)


_HANDLERS: dict[tuple[State, str], Callable[[StreamProcessor, Any], Awaitable[ext_proc.ProcessingResponse]]] = {
    (State.REQUEST_HEADERS, "request_headers"): StreamProcessor._on_request_headers,
    (State.REQUEST_BODY, "request_body"): StreamProcessor._on_request_body,
    (State.REQUEST_BODY, "request_trailers"): StreamProcessor._on_trailers,
    (State.RESPONSE_HEADERS, "response_headers"): StreamProcessor._on_response_headers,
    (State.RESPONSE_BODY, "response_body"): StreamProcessor._on_response_body,
    (State.RESPONSE_BODY, "response_trailers"): StreamProcessor._on_trailers,
}


def _header_map(headers: Any) -> dict[str, str]:
    result: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        key = header.key.lower()
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def _client_routing_headers(headers: dict[str, str]) -> list[str]:
    """Return the client's headers that must not reach routing or upstreams."""
    removed = [name for name in headers if name.startswith(("lynkr-", "x-lynkr-"))]
    removed += [name for name in CLIENT_KEY_HEADERS if name in headers]
    if ROUTING_HEADER not in removed:
        removed.append(ROUTING_HEADER)
    return removed


def _credential_headers(upstream: Any, client_headers: dict[str, str]) -> dict[str, str]:
    provider = PROVIDERS[upstream.provider]
    headers = {
        name: value for name, value in provider.extra_headers if name not in client_headers
    }
    if upstream.credential:
        headers[provider.auth_header] = provider.auth_prefix + upstream.credential
    return headers


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return document


def _int_or_zero(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _usd(nanos: int) -> str:
    return str(nanos_to_usd(nanos))
