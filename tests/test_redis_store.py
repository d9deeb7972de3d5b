"""The Redis budget store against the real Redis and PostgreSQL servers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from lynkr_extproc.pricing import Usage
from lynkr_extproc.store import Charge, Rejection, Reservation, SpendRecord, open_store
from tests.support.backends import REDIS_URL, backend_settings

NOW = datetime.now(timezone.utc)
MONTH_START = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def charge(level: str = "team", ident: str = "t1", limit: int = 10**9, org: str = "o1") -> Charge:
    return Charge(
        level, ident, ident, "monthly", f"month:{NOW:%Y-%m}", limit,
        NOW + timedelta(days=40), starts_at=MONTH_START, org=org,
    )


def record(request_id: str, cost: int, team: str = "t1") -> SpendRecord:
    return SpendRecord(
        request_id=request_id, time=NOW, key_id="vk-a", team=team, customer=None, org="o1",
        tier="SIMPLE", provider="openai", upstream="openai", model="gpt-4o-mini", usage=Usage(),
        cost_nanos=cost, usage_source="reported", status=200, outcome="completed", latency_ms=1,
    )


@pytest.fixture(params=["redis", "redis+postgresql"])
def settings(request, tmp_path: Path):
    for server in backend_settings(request.param, tmp_path):
        yield server


def run(coroutine):
    return asyncio.run(coroutine)


async def opened(settings: dict):
    return await open_store(
        settings["store"], timeout_s=5, ledger_url=settings["ledger"], outbox_url=settings["outbox"]
    )


def test_reject_reports_exact_large_amounts(settings):
    """Amounts above 14 significant digits come back exact from the script."""

    async def scenario():
        store = await opened(settings)
        try:
            window = charge(limit=5_000_000 * 10**9)
            await store.settle(Reservation("h0", (window,), 0, None), record("big", 4_999_999_123_456_789))
            return await store.reserve("h1", [window], 10**9, ttl_s=60)
        finally:
            await store.close()

    result = run(scenario())
    assert isinstance(result, Rejection)
    assert result.committed_nanos == 4_999_999_123_456_789
    assert result.held_nanos == 0


def test_settle_is_exactly_once_across_replicas(settings):
    """Two store instances settling the same request id charge it once."""

    async def scenario():
        first, second = await opened(settings), await opened(settings)
        try:
            window = charge()
            held = await first.reserve("h1", [window], 1000, ttl_s=60)
            results = [
                await first.settle(held, record("once", 700)),
                await second.settle(held, record("once", 700)),
            ]
            await first.flush()
            await second.flush()
            return results, await first.balance(window), len(await first.ledger.records())
        finally:
            await first.close()
            await second.close()

    results, (committed, held), records = run(scenario())
    assert results == [True, False]
    assert committed == 700
    assert held == 0
    if "postgresql" in settings["ledger"]:
        assert records == 1


def test_lost_counters_are_rebuilt_from_ledger(settings):
    """After Redis loses every key, the counter comes back from the ledger."""

    async def scenario():
        store = await opened(settings)
        try:
            window = charge()
            for index in range(3):
                held = await store.reserve(f"h{index}", [window], 10, ttl_s=60)
                await store.settle(held, record(f"r{index}", 250))
            await store.flush()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{store.prefix}:*"))
            client.delete(*keys)
            client.close()
            return await store.balance(window)
        finally:
            await store.close()

    committed, held = run(scenario())
    assert committed == 750
    assert held == 0


def test_script_reloaded_after_script_flush(settings):
    """A Redis that forgot the script (NOSCRIPT) gets it loaded again."""

    async def scenario():
        store = await opened(settings)
        try:
            redis.Redis.from_url(REDIS_URL).script_flush()
            return await store.reserve("h1", [charge()], 10, ttl_s=60)
        finally:
            await store.close()

    assert isinstance(run(scenario()), Reservation)


def test_keys_share_the_org_hash_tag(settings):
    """Every key of a request carries the org as its cluster hash tag."""

    async def scenario():
        store = await opened(settings)
        try:
            await store.reserve("h1", [charge("team", "t1"), charge("org", "o1")], 10, ttl_s=60)
            client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
            keys = list(client.scan_iter(match=f"{store.prefix}:*"))
            ttls = {key: client.ttl(key) for key in keys}
            client.close()
            return keys, ttls
        finally:
            await store.close()

    keys, ttls = run(scenario())
    assert keys
    assert all("{o1}" in key for key in keys)
    counters = [key for key in keys if ":c:" in key]
    assert len(counters) == 2
    assert all(ttls[key] > 40 * 24 * 3600 for key in counters)


def test_expired_hold_stops_counting(settings):
    """A hold past its expiry no longer blocks admission."""

    async def scenario():
        store = await opened(settings)
        try:
            window = charge(limit=100)
            first = await store.reserve("h1", [window], 80, ttl_s=0.2)
            blocked = await store.reserve("h2", [window], 80, ttl_s=60)
            await asyncio.sleep(0.3)  # past the first hold's expiry, which is the point
            later = await store.reserve("h3", [window], 80, ttl_s=60)
            return first, blocked, later
        finally:
            await store.close()

    first, blocked, later = run(scenario())
    assert isinstance(first, Reservation)
    assert isinstance(blocked, Rejection)
    assert isinstance(later, Reservation)

