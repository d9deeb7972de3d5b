"""The SQLite budget store: group commits and its worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from lynkr_extproc.store import Rejection, Reservation, open_store
from tests.test_redis_store import charge, record


def test_reserves_of_one_loop_turn_never_overspend(tmp_path: Path):
    """Ten reserves in one transaction against room for three: three holds, seven rejections."""

    async def main() -> tuple[list, int, int]:
        store = await open_store(f"sqlite:///{tmp_path / 'store.db'}", timeout_s=5.0)
        try:
            window = charge(limit=3_000)
            results = await asyncio.gather(
                *(store.reserve(f"hold-{i}", [window], 1_000, ttl_s=60) for i in range(10))
            )
            held = await store.holds_in_flight()
            first = next(r for r in results if isinstance(r, Reservation))
            await store.settle(first, record("r-1", 900))
            committed, _ = await store.balance(window)
            return results, held, committed
        finally:
            await store.close()

    results, held, committed = asyncio.run(main())
    kinds = [type(result) for result in results]
    assert kinds == [Reservation] * 3 + [Rejection] * 7
    assert held == 3
    assert committed == 900


def test_sqlite_thread_named_in_os(tmp_path: Path):
    """The SQLite store's thread shows its name in /proc."""

    def names() -> set[str]:
        tasks = Path("/proc/self/task").iterdir()
        return {(task / "comm").read_text().strip() for task in tasks}

    async def main() -> set[str]:
        store = await open_store(f"sqlite:///{tmp_path / 'store.db'}", timeout_s=5.0)
        try:
            return names()
        finally:
            await store.close()

    assert "lynkr-sqlite" in asyncio.run(main())


def test_expired_hold_frees_its_room(tmp_path: Path):
    """A hold stops counting once it expires, and its total goes with it."""

    async def main() -> tuple:
        store = await open_store(f"sqlite:///{tmp_path / 'store.db'}", timeout_s=5.0)
        try:
            window = charge(limit=1_000)
            first = await store.reserve("hold-a", [window], 1_000, ttl_s=0.2)
            blocked = await store.reserve("hold-b", [window], 1_000, ttl_s=60)
            await asyncio.sleep(0.3)
            after = await store.reserve("hold-c", [window], 1_000, ttl_s=60)
            return first, blocked, after, await store.balance(window)
        finally:
            await store.close()

    first, blocked, after, balance = asyncio.run(main())
    assert isinstance(first, Reservation)
    assert isinstance(blocked, Rejection)
    assert isinstance(after, Reservation)
    assert balance == (0, 1_000)


def test_open_holds_count_after_reopen(tmp_path: Path):
    """Reopening rebuilds the held totals, even for a holds file written without them."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    window = charge(limit=10_000)

    async def reserve_then_close() -> None:
        store = await open_store(url, timeout_s=5.0)
        try:
            await store.reserve("hold-a", [window], 2_500, ttl_s=60)
            await store.reserve("hold-b", [window], 1_500, ttl_s=60)
        finally:
            await store.close()

    async def reopen() -> tuple[int, int]:
        store = await open_store(url, timeout_s=5.0)
        try:
            return await store.balance(window)
        finally:
            await store.close()

    asyncio.run(reserve_then_close())
    with sqlite3.connect(tmp_path / "store.db-holds") as holds:
        holds.execute("DROP TABLE hold_totals")
    assert asyncio.run(reopen()) == (0, 4_000)
