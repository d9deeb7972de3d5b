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
import time
import uuid
from datetime import datetime
from typing import Any, Awaitable, Callable

from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc

from . import dispatch, responses
from .errors import ClientError, ProtocolError, InvalidRequestError, RequestTooLargeError, StoreError
from .formats import format_for_path
from .gateway import Admission, Gateway, Tenant
from .money import format_usd, nanos_to_usd
from .pricing import Usage
from .providers import PROVIDERS
from .headers import ROUTING_HEADER, SERVED_BY_HEADER, tier_route_value
from .response_reader import ResponseReader

logger = logging.getLogger(__name__)

CLIENT_KEY_HEADERS = ("authorization", "x-api-key", "api-key")


class State(enum.Enum):
    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"
    DONE = "done"


class StreamProcessor:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.state = State.REQUEST_HEADERS
        self.request_id = ""
        self.started: datetime = gateway.clock()
        self._headers: dict[str, str] = {}
        self._api: Any = None
        self._tenant: Tenant | None = None
        self._body = bytearray()
        self._facts: Any = None
        self._admission: Admission | None = None
        self._reader: ResponseReader | None = None
        self._settled = False
        self._retrying: asyncio.Future[None] | None = None
        self._fallback = False
        self._client_body: dict[str, Any] = {}
        self._served: Any = None
        """The route that actually served: a fallback's, when the primary failed."""

    async def handle(self, request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        """Process one message from Envoy and return the reply."""
        kind = request.WhichOneof("request")
        handler = _HANDLERS.get((self.state, kind))
        if handler is None:
            raise ProtocolError(f"invalid input {kind} in state {self.state.value}")
        started = time.perf_counter()
        try:
            return await handler(self, getattr(request, kind))
        finally:
            self.gateway.metrics.observe_phase(kind, time.perf_counter() - started)

    # -- request headers ---------------------------------------------------

    async def _on_request_headers(self, message: ext_proc.HttpHeaders) -> ext_proc.ProcessingResponse:
        headers = responses.header_map(message.headers)
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
        declared = headers.get("content-length", "")
        limit = self.gateway.config.max_request_bytes
        if declared.isdigit() and int(declared) > limit:
            # Rejected before Envoy sends the body over gRPC at all.
            return self._reject(RequestTooLargeError(f"request body is larger than {limit} bytes"), style)
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

    async def _admit(self, api: Any, tenant: Tenant) -> ext_proc.ProcessingResponse:
        body = _parse_json_object(bytes(self._body))
        facts = read_request_safely(api, body)
        self._facts = facts
        chosen = await self.gateway.route(tenant, api.name, facts, self._headers)
        admission = await self.gateway.admit_with_downgrade(tenant, chosen, facts, api.name)
        self._admission = admission
        self._served = admission.route
        self.state = State.RESPONSE_HEADERS
        self.gateway.metrics.requests.labels("admitted", admission.route.tier).inc()
        self.gateway.metrics.holds.inc()
        tier = self.gateway.config.tiers.get(admission.route.tier)
        if tier is not None and tier.fallback:
            # Kept for the response side: the translation back from the member
            # that serves reads what the client asked for (streamed usage, model).
            self._client_body = body
            return self._to_fallback_chain(tier.name, api.name)
        return self._to_upstream(api, body, facts, admission.route)

    def _to_fallback_chain(self, tier: str, api: str) -> ext_proc.ProcessingResponse:
        """Route to the tier's chain; each attempt is prepared by its own ext_proc stream."""
        self._fallback = True
        return responses.request_body(
            responses.common(set_headers={ROUTING_HEADER: tier_route_value(tier, api)}, clear_route_cache=True)
        )

    def _to_upstream(self, api: Any, body: dict[str, Any], facts: Any, route: Any) -> ext_proc.ProcessingResponse:
        call, upstream_api, translation = dispatch.upstream_call(
            route.upstream, route.model, api, body, facts, self._headers,
            include_usage=self.gateway.config.inject_stream_usage,
        )
        set_headers = {ROUTING_HEADER: route.upstream.name, **call.headers}
        if call.path is not None:
            set_headers[":path"] = call.path
        new_body = None
        if call.body != body:
            new_body = encode_json(call.body)
            set_headers["content-length"] = str(len(new_body))
        self._reader = self._new_reader(api, upstream_api, translation)
        return responses.request_body(
            responses.common(
                set_headers=set_headers,
                remove=call.remove_headers,
                body=new_body,
                clear_route_cache=True,
            )
        )

    def _new_reader(self, api: Any, upstream_api: Any, translation: Any) -> ResponseReader:
        config = self.gateway.config
        facts = self._facts
        strip_usage = (
            facts.stream
            and config.inject_stream_usage
            and not config.forward_usage_chunk
            and not facts.client_wants_usage
            and api.name == "openai_chat"
        )
        return ResponseReader(upstream_api, api, translation, strip_usage=strip_usage, request_id=self.request_id)

    # -- response headers --------------------------------------------------

    async def _on_response_headers(self, message: ext_proc.HttpHeaders) -> ext_proc.ProcessingResponse:
        admission = self._admission
        assert admission is not None
        headers = responses.header_map(message.headers)
        removed_internal: list[str] = []
        if self._fallback:
            served_by = headers.get(SERVED_BY_HEADER, admission.route.upstream.name)
            self._served = self.gateway.served_route(admission.route, served_by)
            upstream_api, translation = dispatch.response_translation(self._served.upstream, self._api)
            if translation is not None:
                self._prime(translation)
            self._reader = self._new_reader(self._api, upstream_api, translation)
            removed_internal.append(SERVED_BY_HEADER)
        reader = self._reader
        assert reader is not None
        changed, removed = reader.on_headers(headers)
        route = self._served
        added = {
            **changed,
            "x-lynkr-tier": route.tier,
            "x-lynkr-model": route.model,
            "x-lynkr-routing-reason": route.reason,
        }
        if admission.reservation.remaining_nanos is not None:
            added["x-lynkr-budget-remaining-usd"] = format_usd(admission.reservation.remaining_nanos, 6)
        reply = responses.common(set_headers=added, remove=[*removed, *removed_internal])
        if message.end_of_stream:
            await self._settle(outcome_hint="completed")
            self.state = State.DONE
            return responses.response_headers(reply)
        self.state = State.RESPONSE_BODY
        mode = responses.STREAM_RESPONSE if reader.streaming else responses.BUFFER_RESPONSE
        return responses.response_headers(reply, mode)

    def _prime(self, translation: Any) -> None:
        """Run the client's request through a fallback member's translation.

        The attempt's own ext_proc stream translated the request that was
        sent; this copy only records what the response translation needs.
        """
        try:
            translation.request(self._client_body, model=self._served.model)
        except ClientError as error:
            logger.warning(
                "request %s: request not translatable for the response of %s: %s",
                self.request_id, self._served.upstream.name, error.message,
            )

    # -- response body -----------------------------------------------------

    async def _on_response_body(self, message: ext_proc.HttpBody) -> ext_proc.ProcessingResponse:
        reader = self._reader
        assert reader is not None
        mutation = reader.on_body(message.body, end=message.end_of_stream)
        if message.end_of_stream:
            # Recorded before the last chunk is released, so a response the
            # client received always has its spend on disk.
            await self._settle(outcome_hint="completed")
            self.state = State.DONE
        return responses.response_body(responses.common(body=mutation))

    # -- trailers ----------------------------------------------------------

    async def _on_trailers(self, message: Any) -> ext_proc.ProcessingResponse:
        kind = "request_trailers" if self.state in (State.REQUEST_BODY,) else "response_trailers"
        return responses.trailers_response(kind)

    # -- ending ------------------------------------------------------------

    def _reject(self, error: ClientError, style: str) -> ext_proc.ProcessingResponse:
        self.state = State.DONE
        tenant = self._tenant
        self.gateway.metrics.requests.labels(_DECISIONS.get(error.status, "error"), "-").inc()
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

    @property
    def needs_finish(self) -> bool:
        """True while `finish()` still has spend to record or a retry to wait for."""
        return (self._admission is not None and not self._settled) or self._retrying is not None

    async def finish(self) -> None:
        """Record spend if the stream ended before the response did, and wait for retries."""
        if self._admission is not None and not self._settled:
            await self._settle(outcome_hint="partial")
        if self._retrying is not None:
            await self._retrying

    async def _settle(self, *, outcome_hint: str) -> None:
        if self._settled:
            return
        self._settled = True
        admission, tenant = self._admission, self._tenant
        assert admission is not None and tenant is not None
        try:
            usage, source, outcome, flags = self._final_usage(outcome_hint)
        except Exception:  # unreadable usage must not leave the hold behind
            logger.exception("request %s: usage could not be read; recording none", self.request_id)
            usage, source, outcome, flags = Usage(), "estimated", "failed", {"usage_unreadable"}
        record = self.gateway.record(
            route=self._served,
            provider_cost_nanos=self._reader.provider_cost() if self._reader else None,
            request_id=self.request_id,
            tenant=tenant,
            admission=admission,
            usage=usage,
            usage_source=source,
            status=self._reader.status if self._reader else 0,
            outcome=outcome,
            started=self.started,
            flags=flags,
        )
        metrics = self.gateway.metrics
        metrics.holds.dec()
        try:
            # Shielded: a stream cancelled while its record is being written
            # must not cancel the write.
            with metrics.store_call("settle"):
                written = await asyncio.shield(self.gateway.store.settle(admission.reservation, record))
        except StoreError as exc:
            logger.warning("request %s: spend record failed, retrying: %s", self.request_id, exc)
            self._retrying = asyncio.ensure_future(self._retry_settle(admission, record))
            return
        if written:
            _count_spend(metrics, record, admission)
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

    async def _retry_settle(self, admission: Admission, record: Any) -> None:
        """Retry a failed spend write with backoff; the server awaits it in `finish()`."""
        delay = 0.2
        for _ in range(SETTLE_RETRIES):
            await asyncio.sleep(delay)
            try:
                await self.gateway.store.settle(admission.reservation, record)
            except StoreError as exc:
                delay *= 2
                last = exc
                continue
            logger.info("request %s: spend recorded after a retry", self.request_id)
            return
        # NOTE: the SQLite store has no outbox, so this record is lost; its hold expires.
        logger.error("request %s: spend record failed %d times: %s", self.request_id, SETTLE_RETRIES, last)

    def _final_usage(self, outcome_hint: str) -> tuple[Usage, str, str, set[str]]:
        """Decide the usage to charge: reported, or estimated from text seen."""
        reader = self._reader
        flags: set[str] = set()
        if reader is None or reader.status == 0:
            return Usage(), "estimated", "aborted", flags | {"no_response"}
        reported, finished, failed, text_chars = reader.observed(flags)
        failed = failed or reader.status >= 400
        cut = outcome_hint == "partial" and not finished
        if reported is not None and not cut:
            return reported, "reported", "failed" if failed else "completed", flags
        if reported is None and failed:
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


SETTLE_RETRIES = 6
"""Attempts to write a spend record after a store failure, 0.2 s apart and doubling."""

_DECISIONS = {401: "unauthenticated", 403: "forbidden", 429: "rejected_budget", 503: "unavailable"}


def _count_spend(metrics: Any, record: Any, admission: Admission) -> None:
    usd = record.cost_nanos / 1e9  # Prometheus counters are floats; the ledger stays exact
    for level in sorted({charge.level for charge in admission.reservation.charges}):
        metrics.spend.labels(level, record.tier).inc(usd)
    metrics.usage_source.labels(record.usage_source, record.outcome).inc()
    usage = record.usage
    for kind, tokens in (("input", usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens), ("output", usage.output_tokens)):
        metrics.token_usage.labels(kind, record.model, record.provider).observe(tokens)


_HANDLERS: dict[tuple[State, str], Callable[[StreamProcessor, Any], Awaitable[ext_proc.ProcessingResponse]]] = {
    (State.REQUEST_HEADERS, "request_headers"): StreamProcessor._on_request_headers,
    (State.REQUEST_BODY, "request_body"): StreamProcessor._on_request_body,
    (State.REQUEST_BODY, "request_trailers"): StreamProcessor._on_trailers,
    (State.RESPONSE_HEADERS, "response_headers"): StreamProcessor._on_response_headers,
    (State.RESPONSE_BODY, "response_body"): StreamProcessor._on_response_body,
    (State.RESPONSE_BODY, "response_trailers"): StreamProcessor._on_trailers,
}


def _client_routing_headers(headers: dict[str, str]) -> list[str]:
    """Return the client's headers that must not reach routing or upstreams."""
    removed = [name for name in headers if name.startswith(("lynkr-", "x-lynkr-"))]
    removed += [name for name in CLIENT_KEY_HEADERS if name in headers]
    if ROUTING_HEADER not in removed:
        removed.append(ROUTING_HEADER)
    return removed


def _credential_headers(upstream: Any, client_headers: dict[str, str]) -> dict[str, str]:
    """Return the provider's credential and required headers for a pass-through call."""
    provider = PROVIDERS[upstream.provider]
    headers = {name: value for name, value in provider.default_headers if name not in client_headers}
    headers.update(upstream.headers)
    headers.update(provider.auth_headers(upstream.target()))
    return headers


def read_request_safely(api: Any, body: dict[str, Any]) -> Any:
    """Read a request's facts; a field of the wrong type is the client's error, a 400."""
    try:
        return api.read_request(body)
    except ClientError:
        raise
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply to read") from None
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise InvalidRequestError(
            f"request body has a field of the wrong type for {api.name}: {exc}"
        ) from None


def encode_json(document: Any) -> bytes:
    """Serialize a body as compact UTF-8 JSON; unpaired surrogates are escaped."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply to read") from None
    if not isinstance(document, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return document


def _usd(nanos: int) -> str:
    return format(nanos_to_usd(nanos), "f")
