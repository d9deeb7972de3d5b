"""SQLite budget store: the embedded default for one host.

Several ext_proc processes may share one database file. Every reserve and
settle runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write
lock before reading, so two processes cannot both read the same balance
and both reserve against it. The database runs in WAL mode with
`synchronous=FULL`: a settled record has been fsync'd when `settle`
returns. Holds are kept in a second file (PATH-holds) without fsync. All calls run on one worker thread per process, so the event
loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from ..errors import StoreError
from ..pricing import Usage
from .base import BudgetStore, Charge, GroupCommit, Rejection, Reservation, SpendRecord, store_thread

T = TypeVar("T")

MIGRATIONS = (
    """
    CREATE TABLE budget_counters (
        level TEXT NOT NULL,
        counter TEXT NOT NULL,
        period TEXT NOT NULL,
        committed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (level, counter, period)
    ) WITHOUT ROWID;
    CREATE TABLE budget_holds (
        hold_id TEXT NOT NULL,
        level TEXT NOT NULL,
        counter TEXT NOT NULL,
        period TEXT NOT NULL,
        amount INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (hold_id, level, counter, period)
    );
    CREATE INDEX budget_holds_by_counter ON budget_holds (level, counter, period);
    CREATE INDEX budget_holds_by_expiry ON budget_holds (expires_at);
    CREATE TABLE spend_log (
        request_id TEXT PRIMARY KEY,
        time TEXT NOT NULL,
        key_id TEXT NOT NULL,
        team TEXT NOT NULL,
        customer TEXT,
        org TEXT NOT NULL,
        tier TEXT NOT NULL,
        provider TEXT NOT NULL,
        upstream TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        usage_source TEXT NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        latency_ms INTEGER NOT NULL,
        flags TEXT NOT NULL
    );
    CREATE INDEX spend_log_by_time ON spend_log (time);
    CREATE TABLE sessions (
        session TEXT PRIMARY KEY,
        tier TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    "ALTER TABLE spend_log ADD COLUMN provider_cost_nanos INTEGER",
    # Holds moved to the attached holds database (see SQLiteStore._open).
    "DROP TABLE budget_holds",
)

_HOLDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds.budget_holds (
    hold_id TEXT NOT NULL,
    level TEXT NOT NULL,
    counter TEXT NOT NULL,
    period TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (hold_id, level, counter, period)
);
CREATE INDEX IF NOT EXISTS holds.budget_holds_by_counter ON budget_holds (level, counter, period);
CREATE INDEX IF NOT EXISTS holds.budget_holds_by_expiry ON budget_holds (expires_at);
CREATE TABLE IF NOT EXISTS holds.hold_totals (
    level TEXT NOT NULL,
    counter TEXT NOT NULL,
    period TEXT NOT NULL,
    held INTEGER NOT NULL,
    PRIMARY KEY (level, counter, period)
) WITHOUT ROWID;
"""


class SQLiteStore(BudgetStore):
    def __init__(self, path: str, *, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._executor = store_thread("lynkr-sqlite")
        self._db: sqlite3.Connection | None = None
        self._reserves = GroupCommit(self._run_transaction, _reserve_all)
        self._settles = GroupCommit(self._run_transaction, _settle_all)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(
            self._path,
            timeout=self._timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # Holds live in a second file without fsync: they expire anyway, and
        # a reserve that writes only holds then commits without touching the
        # disk, while counters and the spend log stay fully durable.
        # BEGIN IMMEDIATE locks both files, so reserves stay serialized.
        db.execute("ATTACH DATABASE ? AS holds", (self._path + "-holds",))
        db.execute("PRAGMA holds.journal_mode=WAL")
        db.execute("PRAGMA holds.synchronous=OFF")
        db.executescript(_HOLDS_SCHEMA)
        self._db = db
        self._migrate(db)
        # hold_totals keeps each counter's held sum, so that a reserve reads one
        # row instead of summing every open hold; rebuilt here from the holds.
        self._transaction(_rebuild_hold_totals)

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, function, *args)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except asyncio.TimeoutError:
            raise StoreError(f"sqlite store {self._path} timed out after {self._timeout_s}s") from None
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self._path} failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"sqlite store {self._path} is closed")
        return self._db

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def reserve(
        self,
        hold_id: str,
        charges: Sequence[Charge],
        estimate_nanos: int,
        *,
        ttl_s: float,
    ) -> Reservation | Rejection:
        """Reserve in a group commit: the reserves of one loop turn share a transaction.

        They run one after another inside it, so each one counts the holds of
        the ones before, exactly as separate transactions would.
        """
        return await self._reserves.submit((hold_id, tuple(charges), estimate_nanos, ttl_s))

    async def settle(self, reservation: Reservation, record: SpendRecord) -> bool:
        """Settle in a group commit: settles waiting together share one fsync."""
        return await self._settles.submit((reservation, record))

    async def _run_transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._transaction, body)

    async def release(self, reservation: Reservation) -> None:
        def body(db: sqlite3.Connection) -> None:
            _drop_hold(db, reservation.hold_id)

        await self._run(self._transaction, body)

    async def balance(self, charge: Charge) -> tuple[int, int]:
        def body(db: sqlite3.Connection) -> tuple[int, int]:
            _expire_holds(db, time.time())
            return _balance(db, charge)

        return await self._run(self._transaction, body)

    async def spend_record(self, request_id: str) -> SpendRecord | None:
        def query() -> SpendRecord | None:
            row = self._connection().execute(
                "SELECT * FROM spend_log WHERE request_id = ?", (request_id,)
            ).fetchone()
            return None if row is None else _row_record(row)

        return await self._run(query)

    async def session_tier(self, session: str, *, max_age_s: float) -> str | None:
        def query() -> str | None:
            row = self._connection().execute(
                "SELECT tier FROM sessions WHERE session = ? AND updated_at > ?",
                (session, time.time() - max_age_s),
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(query)

    async def pin_session(self, session: str, tier: str, *, ttl_s: float) -> None:
        def write() -> None:
            self._connection().execute(
                "INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT (session) "
                "DO UPDATE SET tier = excluded.tier, updated_at = excluded.updated_at",
                (session, tier, time.time()),
            )

        await self._run(write)

    async def holds_in_flight(self) -> int:
        def query() -> int:
            db = self._connection()
            return db.execute(
                "SELECT count(*) FROM budget_holds WHERE expires_at > ?", (time.time(),)
            ).fetchone()[0]

        return await self._run(query)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


def _reserve_all(
    db: sqlite3.Connection, items: list[tuple[str, tuple[Charge, ...], int, float]]
) -> list[Reservation | Rejection]:
    now = time.time()
    _expire_holds(db, now)
    return [_reserve_one(db, now, *item) for item in items]


def _reserve_one(
    db: sqlite3.Connection, now: float, hold_id: str, charges: tuple[Charge, ...], estimate_nanos: int, ttl_s: float
) -> Reservation | Rejection:
    remaining: int | None = None
    for charge in charges:
        committed, held = _balance(db, charge)
        spent = committed + held
        if spent >= charge.limit_nanos or spent + estimate_nanos > charge.limit_nanos:
            return Rejection(charge, committed, held)
        room = charge.limit_nanos - spent - estimate_nanos
        remaining = room if remaining is None else min(remaining, room)
    db.executemany(
        "INSERT INTO budget_holds VALUES (?, ?, ?, ?, ?, ?)",
        [(hold_id, c.level, c.counter, c.period, estimate_nanos, now + ttl_s) for c in charges],
    )
    db.executemany(
        "INSERT INTO hold_totals VALUES (?, ?, ?, ?) ON CONFLICT (level, counter, period) "
        "DO UPDATE SET held = held + excluded.held",
        [(c.level, c.counter, c.period, estimate_nanos) for c in charges],
    )
    return Reservation(hold_id, charges, estimate_nanos, remaining)


def _settle_all(db: sqlite3.Connection, items: list[tuple[Reservation, SpendRecord]]) -> list[bool]:
    return [_settle_one(db, reservation, record) for reservation, record in items]


def _settle_one(db: sqlite3.Connection, reservation: Reservation, record: SpendRecord) -> bool:
    inserted = db.execute(
        "INSERT OR IGNORE INTO spend_log VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _record_row(record),
    ).rowcount
    if inserted:
        db.executemany(
            "INSERT INTO budget_counters VALUES (?, ?, ?, ?) "
            "ON CONFLICT (level, counter, period) "
            "DO UPDATE SET committed = committed + excluded.committed",
            [(c.level, c.counter, c.period, record.cost_nanos) for c in reservation.charges],
        )
    _drop_hold(db, reservation.hold_id)
    return bool(inserted)


def _balance(db: sqlite3.Connection, charge: Charge) -> tuple[int, int]:
    key = (charge.level, charge.counter, charge.period)
    row = db.execute(
        "SELECT committed FROM budget_counters WHERE level = ? AND counter = ? AND period = ?",
        key,
    ).fetchone()
    held = db.execute(
        "SELECT held FROM hold_totals WHERE level = ? AND counter = ? AND period = ?", key
    ).fetchone()
    return (row[0] if row else 0), (held[0] if held else 0)


def _drop_hold(db: sqlite3.Connection, hold_id: str) -> None:
    """Delete one reservation's holds and take their amounts off the totals."""
    rows = db.execute(
        "SELECT amount, level, counter, period FROM budget_holds WHERE hold_id = ?", (hold_id,)
    ).fetchall()
    if rows:
        db.executemany(_SUBTRACT_HELD, rows)
        db.execute("DELETE FROM budget_holds WHERE hold_id = ?", (hold_id,))


def _expire_holds(db: sqlite3.Connection, now: float) -> None:
    """Delete expired holds and take their amounts off the totals."""
    expired = db.execute(
        "SELECT sum(amount), level, counter, period FROM budget_holds "
        "WHERE expires_at <= ? GROUP BY level, counter, period",
        (now,),
    ).fetchall()
    if expired:
        db.executemany(_SUBTRACT_HELD, expired)
        db.execute("DELETE FROM budget_holds WHERE expires_at <= ?", (now,))
        db.execute("DELETE FROM hold_totals WHERE held = 0")


def _rebuild_hold_totals(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM hold_totals")
    db.execute(
        "INSERT INTO hold_totals SELECT level, counter, period, sum(amount) "
        "FROM budget_holds GROUP BY level, counter, period"
    )


_SUBTRACT_HELD = (
    "UPDATE hold_totals SET held = held - ? WHERE level = ? AND counter = ? AND period = ?"
)


def _record_row(record: SpendRecord) -> tuple[Any, ...]:
    usage = record.usage
    return (
        record.request_id,
        record.time.astimezone(timezone.utc).isoformat(),
        record.key_id,
        record.team,
        record.customer,
        record.org,
        record.tier,
        record.provider,
        record.upstream,
        record.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        record.cost_nanos,
        record.usage_source,
        record.status,
        record.outcome,
        record.latency_ms,
        json.dumps(list(record.flags)),
        record.provider_cost_nanos,
    )


def _row_record(row: tuple[Any, ...]) -> SpendRecord:
    return SpendRecord(
        request_id=row[0],
        time=datetime.fromisoformat(row[1]),
        key_id=row[2],
        team=row[3],
        customer=row[4],
        org=row[5],
        tier=row[6],
        provider=row[7],
        upstream=row[8],
        model=row[9],
        usage=Usage(
            input_tokens=row[10],
            output_tokens=row[11],
            cache_read_tokens=row[12],
            cache_write_tokens=row[13],
            reasoning_tokens=row[14],
        ),
        cost_nanos=row[15],
        usage_source=row[16],
        status=row[17],
        outcome=row[18],
        latency_ms=row[19],
        flags=tuple(json.loads(row[20])),
        provider_cost_nanos=row[21],
    )
