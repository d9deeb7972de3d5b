"""The budget store interface shared by every backend.

A request is admitted by one atomic `reserve` over all budget windows that
apply to it. For each window, committed + held + estimate must stay within
the limit. A window whose committed + held spend already reaches the limit
rejects even a zero estimate. A rejection changes nothing. A
reservation is then either settled (the spend record is written and its
cost added to every window, once per request id) or left to expire, so
that a crashed process cannot hold budget forever.
"""

from __future__ import annotations

import abc
import asyncio
import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from ..pricing import Usage


@dataclass(frozen=True)
class Charge:
    """One budget window a request counts against."""

    level: str
    id: str
    """The id shown to clients, such as the team id."""
    counter: str
    """The stored counter id; customers are qualified by their org."""
    window: str
    period: str
    """Counter period key, such as "month:2026-12" or "total"."""
    limit_nanos: int
    resets_at: datetime | None
    starts_at: datetime | None = None
    """Start of the period, for rebuilding the counter from the ledger."""
    org: str = ""
    """The tenant's org: every counter of one request shares it."""


@dataclass(frozen=True)
class Rejection:
    """The first window, in level order, that cannot take the estimate."""

    charge: Charge
    committed_nanos: int
    held_nanos: int


@dataclass(frozen=True)
class Reservation:
    """Budget held for one admitted request."""

    hold_id: str
    charges: tuple[Charge, ...]
    estimate_nanos: int
    remaining_nanos: int | None
    """Room left in the tightest window after this hold, if any window applies."""


@dataclass
class SpendRecord:
    """One row of the spend log: what one request cost and who pays."""

    request_id: str
    time: datetime
    key_id: str
    team: str
    customer: str | None
    org: str
    tier: str
    provider: str
    upstream: str
    model: str
    usage: Usage
    cost_nanos: int
    usage_source: str
    """"reported" by the upstream, or "estimated" from the text seen."""
    status: int
    outcome: str
    """"completed", "partial" (cut before the end) or "failed"."""
    latency_ms: int
    flags: tuple[str, ...] = field(default_factory=tuple)
    provider_cost_nanos: int | None = None
    """The upstream's own charge when it reports one (OpenRouter's usage.cost)."""


class BudgetStore(abc.ABC):
    """Atomic budget counters, expiring holds and the spend log."""

    @abc.abstractmethod
    async def reserve(
        self,
        hold_id: str,
        charges: Sequence[Charge],
        estimate_nanos: int,
        *,
        ttl_s: float,
    ) -> Reservation | Rejection:
        """Hold `estimate_nanos` on every charge, or reject and change nothing."""

    @abc.abstractmethod
    async def settle(self, reservation: Reservation, record: SpendRecord) -> bool:
        """Write `record`, add its cost to the reserved windows, drop the hold.

        Returns False, changing no counter, when a record with the same
        request id already exists.
        """

    @abc.abstractmethod
    async def release(self, reservation: Reservation) -> None:
        """Drop a reservation's hold without charging anything."""

    @abc.abstractmethod
    async def balance(self, charge: Charge) -> tuple[int, int]:
        """Return (committed, held) nano-dollars of one window."""

    @abc.abstractmethod
    async def spend_record(self, request_id: str) -> SpendRecord | None:
        """Return the spend record of one request, if written."""

    @abc.abstractmethod
    async def session_tier(self, session: str, *, max_age_s: float) -> str | None:
        """Return the tier a conversation was pinned to, if recent."""

    @abc.abstractmethod
    async def pin_session(self, session: str, tier: str, *, ttl_s: float) -> None:
        """Pin a conversation to a tier for `ttl_s` seconds."""

    @abc.abstractmethod
    async def holds_in_flight(self) -> int:
        """Return the number of unexpired holds, over all windows."""

    async def flush(self) -> None:
        """Wait until every settled record is in the durable ledger."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and close connections."""


_PR_SET_NAME = 15


def store_thread(name: str) -> ThreadPoolExecutor:
    """Return a one-thread executor whose thread carries `name` in the OS too.

    `top -H` and /proc/PID/task/*/comm then show the store's thread by name
    (at most 15 bytes), which is how the benchmark measures its CPU.
    """

    def set_os_name() -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # Not Linux: the thread keeps the process's name.

    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=set_os_name)


Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Writes the items submitted while no write of theirs runs in one transaction.

    One transaction runs at a time. Items that arrive while it runs wait
    and go together into the next one, at most `max_items` per
    transaction. Concurrent writers thus share one commit, one fsync and
    one hand-off to the store's thread. The store's deadline covers one
    transaction of bounded size, never the wait behind the ones before.
    `write` gets the connection and the items in order and returns one
    result per item. `run` runs a function of the connection as one
    transaction; when it raises, every item of that transaction gets the
    exception.
    """

    def __init__(
        self,
        run: Callable[[Callable[[Any], list[Result]]], Awaitable[list[Result]]],
        write: Callable[[Any, list[Item]], list[Result]],
        *,
        max_items: int = 500,
    ) -> None:
        self._run = run
        self._write = write
        self._max_items = max_items
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running = False

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._running:
            self._running = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let the other writers of this loop turn join
            while self._pending:
                batch = self._pending[: self._max_items]
                del self._pending[: self._max_items]
                await self._commit(batch)
        finally:
            self._running = False

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run(lambda connection: self._write(connection, items))
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
