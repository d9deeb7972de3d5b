"""Redis budget store: shared counters for many ext_proc replicas.

Key layout, with the default prefix `lynkr` and the tenant's org as the
Redis Cluster hash tag, so that every key one request touches is in one
slot:

    lynkr:{ORG}:c:LEVEL:ID:PERIOD    committed nano-dollars (string)
    lynkr:{ORG}:hz:LEVEL:ID:PERIOD   holds: hold id -> expiry ms (sorted set)
    lynkr:{ORG}:ha:LEVEL:ID:PERIOD   holds: hold id -> amount (hash)
    lynkr:{ORG}:hs:LEVEL:ID:PERIOD   sum of held amounts (string)
    lynkr:{ORG}:settled:REQUEST_ID   exactly-once marker, kept 7 days
    lynkr:session:SESSION            tier a conversation is pinned to

PERIOD is the window's period key (`month:2026-12`, `total`), so a new
period starts from a new key without any reset job. Counters expire 7 days
after their window ends. A counter that is missing (Redis restarted
without persistence, a new cluster, eviction) is rebuilt from the ledger
plus the local outbox before the request that needs it is admitted.

All operations run in `redis_budget.lua`, loaded once and called by SHA.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from importlib import resources
from typing import Any, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ..errors import StoreError
from .base import BudgetStore, Charge, Rejection, Reservation, SpendRecord
from .ledger import Ledger, Outbox

logger = logging.getLogger(__name__)

COUNTER_GRACE = timedelta(days=7)
MARKER_TTL_S = 7 * 24 * 3600
FLUSH_BATCH = 500
REBUILD_TIMEOUT_S = 120.0


class RedisStore(BudgetStore):
    def __init__(self, url: str, ledger: Ledger, outbox: Outbox, *, timeout_s: float) -> None:
        self._url, self.prefix = _split_prefix(url)
        self.ledger = ledger
        self.outbox = outbox
        self._timeout_s = timeout_s
        self._client: Any = None
        self._sha = ""
        self._script = resources.files("lynkr_extproc.store").joinpath("redis_budget.lua").read_text()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_flusher = asyncio.Event()
        self._rebuilds: dict[tuple[str, ...], asyncio.Future[None]] = {}
        self._closing = False
        self._marking: set[asyncio.Task[None]] = set()
        """Outbox marks still being written; `close` waits for them."""

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._client = aioredis.from_url(
            self._url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            decode_responses=True,
        )
        await self.outbox.open()
        await self.ledger.open()
        try:
            await self._load_script()
            await self._check_eviction_policy()
        except StoreError as exc:
            # Start anyway: requests follow the failure policy until Redis responds.
            logger.error("redis budget store unavailable at start: %s", exc)
        self._tasks = [
            asyncio.ensure_future(self._flush_loop()),
            asyncio.ensure_future(self._reconcile_loop()),
        ]

    async def _load_script(self) -> None:
        self._sha = await self._call(self._client.script_load(self._script))

    async def _check_eviction_policy(self) -> None:
        try:
            policy = await self._call(self._client.config_get("maxmemory-policy"))
        except StoreError:
            return  # CONFIG is often disabled on managed Redis
        value = policy.get("maxmemory-policy", "noeviction")
        if value != "noeviction":
            logger.warning(
                "redis maxmemory-policy is %s: evicted counters are rebuilt from the "
                "ledger, but spend not yet in the ledger is lost; use noeviction", value,
            )

    async def close(self) -> None:
        await asyncio.gather(*self._marking, return_exceptions=True)
        self._closing = True
        self._wake_flusher.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._drain_once(), self._timeout_s * 5)
        except (StoreError, asyncio.TimeoutError) as exc:
            logger.warning("outbox not drained at shutdown; it is replayed at the next start: %s", exc)
        if self._client is not None:
            await self._client.aclose()
        await self.ledger.close()
        await self.outbox.close()

    # -- redis calls -------------------------------------------------------

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await asyncio.wait_for(coroutine, self._timeout_s)
        except asyncio.TimeoutError:
            raise StoreError(f"redis timed out after {self._timeout_s}s") from None
        except redis_errors.RedisError as exc:
            raise StoreError(f"redis failed: {exc}") from exc

    async def _script_call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if not self._sha:
            await self._load_script()
        try:
            return await self._call(self._client.evalsha(self._sha, len(keys), *keys, *args))
        except StoreError as exc:
            if not isinstance(exc.__cause__, redis_errors.NoScriptError):
                raise
        await self._load_script()
        return await self._call(self._client.evalsha(self._sha, len(keys), *keys, *args))

    def _keys(self, charge: Charge) -> list[str]:
        tail = f"{charge.level}:{charge.counter}:{charge.period}"
        base = f"{self.prefix}:{{{charge.org}}}"
        return [f"{base}:c:{tail}", f"{base}:hz:{tail}", f"{base}:ha:{tail}", f"{base}:hs:{tail}"]

    def _all_keys(self, charges: Sequence[Charge]) -> list[str]:
        return [key for charge in charges for key in self._keys(charge)]

    # -- budget operations -------------------------------------------------

    async def reserve(
        self, hold_id: str, charges: Sequence[Charge], estimate_nanos: int, *, ttl_s: float
    ) -> Reservation | Rejection:
        if not charges:
            return Reservation(hold_id, (), estimate_nanos, None)
        ttl_ms = int(ttl_s * 1000)
        args = ["reserve", hold_id, estimate_nanos, ttl_ms, ttl_ms + 60_000]
        args += [charge.limit_nanos for charge in charges]
        reply = await self._with_rebuild(charges, self._all_keys(charges), args)
        if reply[0] == "REJECT":
            return Rejection(charges[int(reply[1]) - 1], int(reply[2]), int(reply[3]))
        remaining = int(reply[1])
        return Reservation(hold_id, tuple(charges), estimate_nanos, None if remaining < 0 else remaining)

    async def _with_rebuild(self, charges: Sequence[Charge], keys: list[str], args: list[Any]) -> Any:
        for _ in range(3):
            reply = await self._script_call(keys, args)
            if reply[0] != "MISSING":
                return reply
            await self._rebuild([charges[int(index) - 1] for index in reply[1:]])
        raise StoreError("redis counters keep disappearing while being rebuilt; check maxmemory-policy")

    async def _rebuild(self, charges: Sequence[Charge]) -> None:
        """Rebuild missing counters, waiting at most the store timeout.

        The rebuild itself runs as a shared background task per counter set,
        so that a large ledger is summed once, even when the requests that
        found the counters missing give up and follow the failure policy.
        """
        key = tuple(sorted(self._keys(charge)[0] for charge in charges))
        task = self._rebuilds.get(key)
        if task is None:
            task = asyncio.ensure_future(self._rebuild_now(charges))
            self._rebuilds[key] = task
            task.add_done_callback(lambda _: self._rebuilds.pop(key, None))
        try:
            await asyncio.wait_for(asyncio.shield(task), self._timeout_s)
        except asyncio.TimeoutError:
            raise StoreError("redis counters are being rebuilt from the ledger; retry shortly") from None

    async def _rebuild_now(self, charges: Sequence[Charge]) -> None:
        """Set missing counters to the ledger's spend plus undelivered outbox records."""
        started = time.monotonic()
        keys: list[str] = []
        args: list[Any] = ["load"]
        for charge in charges:
            value = await self.ledger.committed_sum(charge, timeout_s=REBUILD_TIMEOUT_S)
            # Charged records still in the outbox were on the lost counters.
            value += sum(r.cost_nanos for r, counted in await self.outbox.matching(charge) if counted)
            keys.append(self._keys(charge)[0])
            expire_at = 0
            if charge.resets_at is not None:
                # Never in the past, even for a window that just ended: its
                # last requests may still be settling.
                ends = max(charge.resets_at.timestamp(), time.time())
                expire_at = int(ends + COUNTER_GRACE.total_seconds())
            args += [value, expire_at]
        await self._script_call(keys, args)
        # Records settled while Redis was down are charged now, before the
        # admission that found the counters missing goes on; other
        # replicas charge theirs from their own outboxes.
        await self._charge_queued(charges)
        logger.info(
            "rebuilt %d redis budget counter(s) from the ledger in %.1f ms",
            len(charges), (time.monotonic() - started) * 1000,
        )

    async def settle(self, reservation: Reservation, record: SpendRecord) -> bool:
        if not await self.outbox.add(record, reservation):
            await self.release(reservation)
            return False
        try:
            first = await self._settle_counters(reservation, record)
        except StoreError as exc:
            logger.error(
                "request %s: counters not charged yet (%s); the record is kept in the "
                "outbox and charged when redis is back", record.request_id, exc,
            )
            return True
        # The mark is not awaited: it only lets the flusher deliver the record,
        # and if it is lost, the reconcile loop charges again, which the
        # settled marker in Redis turns into a no-op.
        task = asyncio.ensure_future(self._mark_counted(record.request_id))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)
        return first

    async def _mark_counted(self, request_id: str) -> None:
        try:
            await self.outbox.mark_counted(request_id)
        except StoreError as exc:
            logger.warning("request %s: outbox mark failed; the reconcile loop retries it: %s", request_id, exc)
            return
        self._wake_flusher.set()

    async def _settle_counters(self, reservation: Reservation, record: SpendRecord) -> bool:
        charges = reservation.charges
        if not charges:
            return True
        marker = f"{self.prefix}:{{{charges[0].org}}}:settled:{record.request_id}"
        keys = self._all_keys(charges) + [marker]
        reply = await self._with_rebuild(charges, keys, ["settle", reservation.hold_id, record.cost_nanos, MARKER_TTL_S])
        return int(reply[1]) == 1

    async def release(self, reservation: Reservation) -> None:
        if reservation.charges:
            await self._script_call(self._all_keys(reservation.charges), ["release", reservation.hold_id])

    async def balance(self, charge: Charge) -> tuple[int, int]:
        reply = await self._with_rebuild([charge], self._all_keys([charge]), ["balance"])
        return int(reply[1]), int(reply[2])

    async def holds_in_flight(self) -> int:
        seconds, micros = await self._call(self._client.time())
        now_ms = seconds * 1000 + micros // 1000
        total = 0
        async for key in self._client.scan_iter(match=f"{self.prefix}:*:hz:*", count=500):
            total += await self._call(self._client.zcount(key, now_ms, "+inf"))
        return total

    # -- records -----------------------------------------------------------

    async def spend_record(self, request_id: str) -> SpendRecord | None:
        return await self.ledger.record(request_id)

    async def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until the outbox is empty: counters charged and ledger written."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self._reconcile_once(older_than_s=0)
            await self._flush_counted()
            uncounted, counted = await self.outbox.size()
            if uncounted == 0 and counted == 0:
                return
            if time.monotonic() > deadline:
                raise StoreError(f"outbox not drained: {uncounted} uncharged, {counted} undelivered")
            await asyncio.sleep(0.05)

    async def _drain_once(self) -> None:
        await self._reconcile_once(older_than_s=0)
        await self._flush_counted()

    async def _flush_counted(self) -> int:
        delivered = 0
        while True:
            batch = await self.outbox.counted_batch(FLUSH_BATCH)
            if not batch:
                return delivered
            await self.ledger.write(batch)
            await self.outbox.delete([record.request_id for record in batch])
            delivered += len(batch)

    async def _flush_loop(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake_flusher.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake_flusher.clear()
            try:
                await self._flush_counted()
                delay = 0.2
            except Exception as exc:  # the loop must outlive any failure
                delay = min(delay * 2, 5.0)
                logger.warning("ledger write failed, retrying in %.1fs: %s", delay, exc)

    async def _charge_queued(self, charges: Sequence[Charge]) -> None:
        for charge in charges:
            for record, counted in await self.outbox.matching(charge):
                if counted:
                    continue
                reservation = await self.outbox.reservation(record.request_id)
                if reservation is None:
                    continue
                await self._settle_counters(reservation, record)
                await self.outbox.mark_counted(record.request_id)

    async def _reconcile_once(self, older_than_s: float) -> int:
        charged = 0
        for record, reservation in await self.outbox.uncounted(older_than_s):
            await self._settle_counters(reservation, record)
            await self.outbox.mark_counted(record.request_id)
            charged += 1
        if charged:
            logger.info("charged %d record(s) kept in the outbox during a redis outage", charged)
            self._wake_flusher.set()
        return charged

    async def _reconcile_loop(self) -> None:
        delay = 1.0
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._reconcile_once(older_than_s=2 * self._timeout_s)
                delay = 1.0
            except Exception as exc:  # the loop must outlive any failure
                delay = min(delay * 2, 10.0)
                logger.warning("redis still unavailable for outbox records, retrying in %.0fs: %s", delay, exc)

    # -- sessions ----------------------------------------------------------

    async def session_tier(self, session: str, *, max_age_s: float) -> str | None:
        return await self._call(self._client.get(f"{self.prefix}:session:{session}"))

    async def pin_session(self, session: str, tier: str, *, ttl_s: float) -> None:
        key = f"{self.prefix}:session:{session}"
        await self._call(self._client.set(key, tier, ex=max(1, int(ttl_s))))


def _split_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", ["lynkr"])[0]
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit(parts._replace(query=rest)), prefix

