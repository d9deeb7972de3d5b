"""The admin gRPC server: bearer-token check, and messages to and from AdminOperations."""

from __future__ import annotations

import functools
import hmac
import logging
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection

from ..config import AdminSettings
from ..errors import StoreError
from ..store import SpendRecord
from .budgets import BudgetView
from .errors import (
    AdminError,
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from .keys import KeyView
from .model import exact_usd
from .operations import AdminOperations
from .reports import ReportRow, SpendReport
from .v1 import admin_pb2 as pb
from .v1 import admin_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Admin"].full_name
REJECTION_LOG_INTERVAL_S = 60.0

LEVELS = {
    pb.LEVEL_VIRTUAL_KEY: "virtual_key",
    pb.LEVEL_TEAM: "team",
    pb.LEVEL_CUSTOMER: "customer",
    pb.LEVEL_ORG: "org",
}
PERIODS = {
    pb.PERIOD_DAY: "day",
    pb.PERIOD_WEEK: "week",
    pb.PERIOD_MONTH: "month",
    pb.PERIOD_TOTAL: "total",
}
DIMENSIONS = {
    pb.DIMENSION_VIRTUAL_KEY: "virtual_key",
    pb.DIMENSION_TEAM: "team",
    pb.DIMENSION_CUSTOMER: "customer",
    pb.DIMENSION_ORG: "org",
    pb.DIMENSION_TIER: "tier",
    pb.DIMENSION_MODEL: "model",
    pb.DIMENSION_PROVIDER: "provider",
}
BUDGET_SOURCES = {
    "admin": pb.BUDGET_SOURCE_ADMIN,
    "config": pb.BUDGET_SOURCE_CONFIG,
    "config_default": pb.BUDGET_SOURCE_CONFIG_DEFAULT,
}
KEY_SOURCES = {"admin": pb.KEY_SOURCE_ADMIN, "config": pb.KEY_SOURCE_CONFIG}

_STATUS = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    ConflictError: grpc.StatusCode.ABORTED,
}

Reply = TypeVar("Reply")


def _rpc(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Reply]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Reply]]:
    """Abort the call with AdminError's status code, or UNAVAILABLE for StoreError."""

    @functools.wraps(method)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await method(self, request, context)
        except AdminError as exc:
            await context.abort(_STATUS[type(exc)], str(exc))
        except StoreError as exc:
            logger.error("admin %s failed: %s", method.__name__, exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the admin database is unavailable, retry: {exc}",
            )
        raise AssertionError("context.abort returned")

    return call


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, operations: AdminOperations) -> None:
        self.operations = operations

    # -- budgets ---------------------------------------------------------------

    @_rpc
    async def SetBudget(self, request: pb.SetBudgetRequest, context: Any) -> pb.Budget:
        view = await self.operations.budgets.set_window(
            *_window(request), request.limit_usd
        )
        return _budget(view)

    @_rpc
    async def GetBudget(self, request: pb.GetBudgetRequest, context: Any) -> pb.Budget:
        return _budget(await self.operations.budgets.get_window(*_window(request)))

    @_rpc
    async def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: Any
    ) -> pb.ListBudgetsResponse:
        level = _enum(request.level, LEVELS, "level") if request.level else None
        views = await self.operations.budgets.list_windows(level, request.id or None)
        return pb.ListBudgetsResponse(budgets=[_budget(view) for view in views])

    @_rpc
    async def DeleteBudget(
        self, request: pb.DeleteBudgetRequest, context: Any
    ) -> pb.DeleteBudgetResponse:
        in_effect = await self.operations.budgets.delete_window(*_window(request))
        if in_effect is None:
            return pb.DeleteBudgetResponse()
        return pb.DeleteBudgetResponse(in_effect=_budget(in_effect))

    # -- keys ------------------------------------------------------------------

    @_rpc
    async def CreateKey(
        self, request: pb.CreateKeyRequest, context: Any
    ) -> pb.CreateKeyResponse:
        view, secret = await self.operations.keys.create(
            key_id=request.id,
            team=request.team,
            org=request.org,
            customers=request.customers,
            tiers=request.tiers,
            models=request.models,
            tier_override=request.tier_override,
        )
        return pb.CreateKeyResponse(key=_key(view), secret=secret)

    @_rpc
    async def ListKeys(
        self, request: pb.ListKeysRequest, context: Any
    ) -> pb.ListKeysResponse:
        views = await self.operations.keys.list_keys(
            include_revoked=request.include_revoked, team=request.team, org=request.org
        )
        return pb.ListKeysResponse(keys=[_key(view) for view in views])

    @_rpc
    async def RevokeKey(
        self, request: pb.RevokeKeyRequest, context: Any
    ) -> pb.VirtualKey:
        return _key(await self.operations.keys.revoke(request.id))

    @_rpc
    async def RotateKey(
        self, request: pb.RotateKeyRequest, context: Any
    ) -> pb.CreateKeyResponse:
        view, secret = await self.operations.keys.rotate(request.id)
        return pb.CreateKeyResponse(key=_key(view), secret=secret)

    # -- spend -----------------------------------------------------------------

    @_rpc
    async def SpendReport(
        self, request: pb.SpendReportRequest, context: Any
    ) -> pb.SpendReportResponse:
        report = await self.operations.spend.report(
            start=_time(request.start) if request.HasField("start") else None,
            end=_time(request.end) if request.HasField("end") else None,
            filters=[
                (_enum(f.dimension, DIMENSIONS, "filter dimension"), f.value)
                for f in request.filters
            ],
            group_by=[
                _enum(d, DIMENSIONS, "group_by dimension") for d in request.group_by
            ],
            reference_model=request.reference_model,
        )
        return _report(report, request.group_by)

    @_rpc
    async def GetSpendRecord(
        self, request: pb.GetSpendRecordRequest, context: Any
    ) -> pb.SpendRecord:
        return _record(await self.operations.spend.record(request.request_id))


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects every call without `authorization: Bearer TOKEN` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self.rejected = 0
        self._logged_at = -REJECTION_LOG_INTERVAL_S

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or self._authorized(details.invocation_metadata or ()):
            return handler
        self.rejected += 1
        now = time.monotonic()
        if now - self._logged_at >= REJECTION_LOG_INTERVAL_S:
            logger.warning(
                "admin API: rejected a call to %s without a valid bearer token (%d so far)",
                details.method,
                self.rejected,
            )
            self._logged_at = now
        return _rejecting(handler)

    def _authorized(self, metadata: Iterable[tuple[str, Any]]) -> bool:
        value = next((v for k, v in metadata if k == "authorization"), "")
        scheme, _, token = str(value).partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self._token
        )


def _rejecting(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Return a handler of the same kind that aborts with UNAUTHENTICATED."""

    async def reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or invalid admin token; send metadata authorization: Bearer TOKEN "
            "with the token from the environment variable named by admin.token_env",
        )

    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(reject, **codecs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(reject, **codecs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(reject, **codecs)
    return grpc.unary_unary_rpc_method_handler(reject, **codecs)


async def serve(
    settings: AdminSettings, operations: AdminOperations
) -> tuple[grpc.aio.Server, int]:
    """Start the admin API on settings.listen; return the server and its port."""
    assert (
        settings.listen is not None and settings.token is not None
    )  # checked by parse_config
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(settings.token)],
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_AdminServicer_to_server(AdminServicer(operations), server)
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on admin.listen {settings.listen}")
    await server.start()
    logger.info("admin API listening on %s", settings.listen)
    return server, port


# -- messages ------------------------------------------------------------------


def _enum(value: int, names: dict[int, str], field: str) -> str:
    name = names.get(value)
    if name is None:
        raise InvalidArgumentError(
            f"{field} is unset or unknown ({value}); set one of the enum's values"
        )
    return name


def _window(request: Any) -> tuple[str, str, str]:
    return (
        _enum(request.level, LEVELS, "level"),
        request.id,
        _enum(request.period, PERIODS, "period"),
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(timezone.utc))
    return stamp


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=timezone.utc)


def _budget(view: BudgetView) -> pb.Budget:
    level = next(number for number, name in LEVELS.items() if name == view.level)
    period = next(number for number, name in PERIODS.items() if name == view.period)
    budget = pb.Budget(
        level=level,
        id=view.ident,
        period=period,
        limit_usd=exact_usd(view.limit_nanos),
        source=BUDGET_SOURCES[view.source],
        name=view.name,
    )
    if view.updated_at is not None:
        budget.updated_at.CopyFrom(_timestamp(view.updated_at))
    return budget


def _key(view: KeyView) -> pb.VirtualKey:
    key = pb.VirtualKey(
        id=view.id,
        team=view.team,
        org=view.org,
        customers=sorted(view.customers or ()),
        tiers=sorted(view.tiers or ()),
        models=sorted(view.models or ()),
        tier_override=view.tier_override,
        source=KEY_SOURCES[view.source],
        state=pb.KEY_STATE_ACTIVE if view.active else pb.KEY_STATE_REVOKED,
    )
    if view.created_at is not None:
        key.created_at.CopyFrom(_timestamp(view.created_at))
    if view.revoked_at is not None:
        key.revoked_at.CopyFrom(_timestamp(view.revoked_at))
    return key


def _report(report: SpendReport, group_by: Iterable[int]) -> pb.SpendReportResponse:
    reply = pb.SpendReportResponse(
        end=_timestamp(report.query.end),
        group_by=list(group_by),
        rows=[_row(row) for row in report.rows],
        total=_row(report.total),
        reference_model=report.reference_model or "",
    )
    if report.query.start is not None:
        reply.start.CopyFrom(_timestamp(report.query.start))
    return reply


def _row(row: ReportRow) -> pb.SpendRow:
    spend = row.spend
    usage = spend.usage
    return pb.SpendRow(
        group=list(spend.group),
        requests=spend.requests,
        tokens=pb.TokenTotals(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_read=usage.cache_read_tokens,
            cache_write=usage.cache_write_tokens,
            reasoning=usage.reasoning_tokens,
        ),
        cost_usd=exact_usd(spend.cost_nanos),
        reference_cost_usd=""
        if row.reference_nanos is None
        else exact_usd(row.reference_nanos),
    )


def _record(record: SpendRecord) -> pb.SpendRecord:
    usage = record.usage
    reply = pb.SpendRecord(
        request_id=record.request_id,
        time=_timestamp(record.time),
        key_id=record.key_id,
        team=record.team,
        customer=record.customer or "",
        org=record.org,
        tier=record.tier,
        provider=record.provider,
        upstream=record.upstream,
        model=record.model,
        tokens=pb.TokenTotals(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_read=usage.cache_read_tokens,
            cache_write=usage.cache_write_tokens,
            reasoning=usage.reasoning_tokens,
        ),
        cost_usd=exact_usd(record.cost_nanos),
        usage_source=record.usage_source,
        status=record.status,
        outcome=record.outcome,
        latency_ms=record.latency_ms,
        flags=list(record.flags),
    )
    if record.provider_cost_nanos is not None:
        reply.provider_cost_usd = exact_usd(record.provider_cost_nanos)
    return reply
