"""Spend through the admin API: reports over the spend log, and single records.

Totals are exact integer sums of the recorded nano-dollar costs. The
optional reference cost prices a group's token totals at another model,
rounded once per group, as a counterfactual for comparison.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from ..errors import StoreError
from ..pricing import Price, Usage
from ..store import SpendRecord
from .base import Operations
from .errors import InvalidArgumentError, NotFoundError
from .model import DIMENSIONS, SpendGroup, SpendQuery

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 5.0
"""How long a spend query waits for this replica's outbox to reach the ledger."""


@dataclass(frozen=True)
class ReportRow:
    spend: SpendGroup
    reference_nanos: int | None
    """The row's tokens priced at the reference model; None without one."""


@dataclass(frozen=True)
class SpendReport:
    query: SpendQuery
    rows: list[ReportRow]
    """Groups with at least one request, by cost (highest first), then group."""
    total: ReportRow
    reference_model: str | None


class SpendOperations(Operations):
    async def report(
        self,
        *,
        start: datetime | None,
        end: datetime | None,
        filters: Iterable[tuple[str, str]] = (),
        group_by: Iterable[str] = (),
        reference_model: str = "",
    ) -> SpendReport:
        """Sum recorded spend per group; optionally price it at a reference model.

        `end` defaults to the gateway clock's now.
        """
        end = end or self.gateway.clock()
        query = SpendQuery(start, end, tuple(filters), tuple(group_by))
        _check_query(query)
        reference = self._reference_price(reference_model) if reference_model else None
        await self._flush()
        found = await self.state.store.spend_report(query)
        groups = sorted(
            (group for group in found if group.requests),
            key=lambda group: (-group.cost_nanos, group.group),
        )

        def row(group: SpendGroup) -> ReportRow:
            if reference is None:
                return ReportRow(group, None)
            return ReportRow(group, reference.cost_nanos(group.usage))

        rows = [row(group) for group in groups]
        return SpendReport(query, rows, row(_sum(groups)), reference_model or None)

    async def record(self, request_id: str) -> SpendRecord:
        """Return the spend record of one request id."""
        if not request_id:
            raise InvalidArgumentError(
                "request_id is empty; give the request's x-request-id"
            )
        await self._flush()
        record = await self.gateway.store.spend_record(request_id)
        if record is None:
            raise NotFoundError(f"no spend record for request {request_id!r}")
        return record

    def _reference_price(self, model: str) -> Price:
        price = self.config.prices.lookup(model)
        if price is None:
            raise InvalidArgumentError(
                f"reference model {model!r} has no price; use a model of the price "
                "table or add it under pricing.models"
            )
        return price

    async def _flush(self) -> None:
        """Move this replica's queued spend into the ledger, so that queries see it.

        Only the Redis store queues spend. Other replicas deliver their own
        queue in the background, normally within a second.
        """
        try:
            await asyncio.wait_for(self.gateway.store.flush(), FLUSH_TIMEOUT_S)
        except (StoreError, asyncio.TimeoutError) as exc:
            logger.warning(
                "admin spend query: queued spend is not in the ledger yet, so the "
                "result may miss it: %s",
                exc or f"timed out after {FLUSH_TIMEOUT_S}s",
            )


def _sum(groups: list[SpendGroup]) -> SpendGroup:
    return SpendGroup(
        group=(),
        requests=sum(g.requests for g in groups),
        usage=Usage(
            input_tokens=sum(g.usage.input_tokens for g in groups),
            output_tokens=sum(g.usage.output_tokens for g in groups),
            cache_read_tokens=sum(g.usage.cache_read_tokens for g in groups),
            cache_write_tokens=sum(g.usage.cache_write_tokens for g in groups),
            reasoning_tokens=sum(g.usage.reasoning_tokens for g in groups),
        ),
        cost_nanos=sum(g.cost_nanos for g in groups),
    )


def _check_query(query: SpendQuery) -> None:
    if query.start is not None and query.start >= query.end:
        raise InvalidArgumentError(
            f"start {query.start.isoformat()} is not before end {query.end.isoformat()}"
        )
    for dimension, value in query.filters:
        _check_dimension(dimension, "filter")
        if not value:
            raise InvalidArgumentError(f"the {dimension} filter has an empty value")
    for dimension in query.group_by:
        _check_dimension(dimension, "group_by")
    if len(set(query.group_by)) != len(query.group_by):
        raise InvalidArgumentError("group_by names a dimension twice")


def _check_dimension(dimension: str, where: str) -> None:
    if dimension not in DIMENSIONS:
        raise InvalidArgumentError(
            f"{where} dimension {dimension!r} is invalid; use one of "
            f"{', '.join(DIMENSIONS)}"
        )
