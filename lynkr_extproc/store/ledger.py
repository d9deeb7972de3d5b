"""The spend ledger and the local outbox that feeds it.

With the Redis budget store, a settled record first goes into a local
SQLite outbox (fsync'd before `settle` returns), then its cost is added to
the Redis counters, and only then does a background task copy it into the
ledger (a SQLite file or PostgreSQL) and delete it from the outbox. So:

- nothing acknowledged is lost when the ledger or the process goes down:
  the outbox is replayed after a restart or an outage;
- a record reaches the ledger only after its counters were charged, so a
  counter rebuilt from the ledger never counts a record that is then
  charged again.

Writes to the ledger are idempotent on the request id.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import StoreError
from ..pricing import Usage
from .base import Charge, GroupCommit, Reservation, SpendRecord, store_thread

logger = logging.getLogger(__name__)

T = TypeVar("T")

_LEVEL_COLUMN = {"virtual_key": "key_id", "team": "team", "org": "org"}


def record_to_json(record: SpendRecord) -> str:
    document = asdict(record)
    document["time"] = record.time.astimezone(timezone.utc).isoformat()
    document["flags"] = list(record.flags)
    return json.dumps(document, separators=(",", ":"))


def record_from_json(text: str) -> SpendRecord:
    document = json.loads(text)
    document["time"] = datetime.fromisoformat(document["time"])
    document["usage"] = Usage(**document["usage"])
    document["flags"] = tuple(document["flags"])
    return SpendRecord(**document)


def reservation_to_json(reservation: Reservation) -> str:
    charges = [
        {**asdict(charge), "resets_at": _iso(charge.resets_at), "starts_at": _iso(charge.starts_at)}
        for charge in reservation.charges
    ]
    return json.dumps({"hold_id": reservation.hold_id, "charges": charges}, separators=(",", ":"))


def reservation_from_json(text: str) -> Reservation:
    document = json.loads(text)
    charges = tuple(
        Charge(**{**charge, "resets_at": _parse(charge["resets_at"]), "starts_at": _parse(charge["starts_at"])})
        for charge in document["charges"]
    )
    return Reservation(document["hold_id"], charges, 0, None)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class _SQLiteFile:
    """One SQLite connection on its own thread, with a deadline per call."""

    def __init__(self, path: str, timeout_s: float, schema: str) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._schema = schema
        self._executor = store_thread("lynkr-sqlite-ledger")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.run(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(self._schema)
        self._db = db

    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"sqlite file {self.path} is closed")
        return self._db

    async def run(self, function: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        try:
            return await asyncio.wait_for(future, timeout_s or self.timeout_s)
        except asyncio.TimeoutError:
            raise StoreError(f"sqlite file {self.path} timed out after {self.timeout_s}s") from None
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite file {self.path} failed: {exc}") from exc

    async def run_transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in one write transaction on the file's thread."""
        return await self.run(self.transaction, body)

    def transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    request_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    reservation TEXT NOT NULL,
    counted INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_counted ON outbox (counted, created_at);
"""


class Outbox:
    """Local durable queue of settled records on their way to the ledger."""

    def __init__(self, path: str, *, timeout_s: float) -> None:
        self._file = _SQLiteFile(path, timeout_s, _OUTBOX_SCHEMA)
        self._adds = GroupCommit(self._file.run_transaction, _insert_records)
        self._marks = GroupCommit(self._file.run_transaction, _mark_counted)

    async def open(self) -> None:
        await self._file.open()

    async def add(self, record: SpendRecord, reservation: Reservation) -> bool:
        """Store a record durably; False when its request id is already queued.

        Records added in the same event loop turn share one transaction.
        """
        row = (
            record.request_id,
            record_to_json(record),
            reservation_to_json(reservation),
            datetime.now(timezone.utc).timestamp(),
        )
        return await self._adds.submit(row)

    async def mark_counted(self, request_id: str) -> None:
        """Mark a record's counters as charged; marks of one loop turn share a transaction."""
        await self._marks.submit(request_id)

    async def uncounted(self, older_than_s: float, limit: int = 100) -> list[tuple[SpendRecord, Reservation]]:
        """Return records whose counters were not charged yet (a store outage)."""

        def query() -> list[tuple[str, str]]:
            cutoff = datetime.now(timezone.utc).timestamp() - older_than_s
            return self._file.connection().execute(
                "SELECT record, reservation FROM outbox WHERE counted = 0 AND created_at <= ? "
                "ORDER BY created_at LIMIT ?",
                (cutoff, limit),
            ).fetchall()

        rows = await self._file.run(query)
        return [(record_from_json(r), reservation_from_json(s)) for r, s in rows]

    async def counted_batch(self, limit: int) -> list[SpendRecord]:
        def query() -> list[tuple[str]]:
            return self._file.connection().execute(
                "SELECT record FROM outbox WHERE counted = 1 ORDER BY created_at LIMIT ?", (limit,)
            ).fetchall()

        return [record_from_json(row[0]) for row in await self._file.run(query)]

    async def delete(self, request_ids: Sequence[str]) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM outbox WHERE request_id = ?", [(i,) for i in request_ids])

        await self._file.run(self._file.transaction, body)

    async def matching(self, charge: Charge) -> list[tuple[SpendRecord, bool]]:
        """Return every queued record that counts against one window, with its charged flag."""
        records = []
        offset = 0
        while True:
            batch = await self._page(offset, 1000)
            records.extend((record, counted) for record, counted in batch if _matches(record, charge))
            if len(batch) < 1000:
                return records
            offset += 1000

    async def _page(self, offset: int, limit: int) -> list[tuple[SpendRecord, bool]]:
        def query() -> list[tuple[str, int]]:
            return self._file.connection().execute(
                "SELECT record, counted FROM outbox ORDER BY created_at LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()

        return [(record_from_json(row[0]), bool(row[1])) for row in await self._file.run(query)]

    async def reservation(self, request_id: str) -> Reservation | None:
        def query() -> tuple[str] | None:
            return self._file.connection().execute(
                "SELECT reservation FROM outbox WHERE request_id = ?", (request_id,)
            ).fetchone()

        row = await self._file.run(query)
        return None if row is None else reservation_from_json(row[0])

    async def size(self) -> tuple[int, int]:
        """Return (uncounted, counted) record counts."""

        def query() -> tuple[int, int]:
            rows = dict(self._file.connection().execute(
                "SELECT counted, count(*) FROM outbox GROUP BY counted"
            ).fetchall())
            return rows.get(0, 0), rows.get(1, 0)

        return await self._file.run(query)

    async def close(self) -> None:
        await self._file.close()


def _insert_records(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[bool]:
    inserted = []
    for row in rows:
        cursor = db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, 0, ?)", row)
        inserted.append(cursor.rowcount == 1)
    return inserted


def _mark_counted(db: sqlite3.Connection, request_ids: list[str]) -> list[None]:
    db.executemany("UPDATE outbox SET counted = 1 WHERE request_id = ?", [(i,) for i in request_ids])
    return [None] * len(request_ids)


def _matches(record: SpendRecord, charge: Charge) -> bool:
    if charge.level == "customer":
        if record.org != charge.org or record.customer != charge.id:
            return False
    elif getattr(record, _LEVEL_COLUMN[charge.level]) != charge.id:
        return False
    if charge.starts_at is not None and record.time < charge.starts_at:
        return False
    return charge.resets_at is None or record.time < charge.resets_at


class Ledger(abc.ABC):
    """Durable spend log, idempotent on the request id."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def write(self, records: Sequence[SpendRecord]) -> None:
        """Insert records; one whose request id exists is skipped."""

    @abc.abstractmethod
    async def committed_sum(self, charge: Charge, *, timeout_s: float | None = None) -> int:
        """Return the recorded cost in one window, for rebuilding its counter."""

    @abc.abstractmethod
    async def record(self, request_id: str) -> SpendRecord | None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


_SQLITE_LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_log (
    request_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    customer TEXT,
    org TEXT NOT NULL,
    record TEXT NOT NULL,
    cost_nanos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_log_by_team ON spend_log (team, time);
CREATE INDEX IF NOT EXISTS spend_log_by_key ON spend_log (key_id, time);
CREATE INDEX IF NOT EXISTS spend_log_by_org ON spend_log (org, customer, time);
"""


class SQLiteLedger(Ledger):
    """A ledger in a local SQLite file: for one host, it contains only this host's spend."""

    def __init__(self, path: str, *, timeout_s: float) -> None:
        self._file = _SQLiteFile(path, timeout_s, _SQLITE_LEDGER_SCHEMA)

    async def open(self) -> None:
        await self._file.open()

    async def write(self, records: Sequence[SpendRecord]) -> None:
        rows = [
            (r.request_id, _utc(r.time), r.key_id, r.team, r.customer, r.org, record_to_json(r), r.cost_nanos)
            for r in records
        ]

        def body(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR IGNORE INTO spend_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

        await self._file.run(self._file.transaction, body)

    async def committed_sum(self, charge: Charge, *, timeout_s: float | None = None) -> int:
        where, params = _where(charge, numbered=False)
        sql = f"SELECT coalesce(sum(cost_nanos), 0) FROM spend_log WHERE {where}"
        return await self._file.run(
            lambda: self._file.connection().execute(sql, params).fetchone()[0], timeout_s=timeout_s
        )

    async def record(self, request_id: str) -> SpendRecord | None:
        row = await self._file.run(
            lambda: self._file.connection().execute(
                "SELECT record FROM spend_log WHERE request_id = ?", (request_id,)
            ).fetchone()
        )
        return None if row is None else record_from_json(row[0])

    async def records(self) -> list[SpendRecord]:
        rows = await self._file.run(
            lambda: self._file.connection().execute("SELECT record FROM spend_log ORDER BY time").fetchall()
        )
        return [record_from_json(row[0]) for row in rows]

    async def close(self) -> None:
        await self._file.close()


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _where(charge: Charge, *, numbered: bool) -> tuple[str, list[Any]]:
    """Return an SQL condition selecting one window's records, with its parameters.

    Placeholders are $1, $2... for PostgreSQL (`numbered`) and ? for SQLite,
    which stores times as ISO 8601 text in UTC.
    """
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}" if numbered else "?"

    def moment(value: datetime) -> Any:
        return value if numbered else _utc(value)

    if charge.level == "customer":
        clauses = [f"org = {bind(charge.org)}", f"customer = {bind(charge.id)}"]
    else:
        clauses = [f"{_LEVEL_COLUMN[charge.level]} = {bind(charge.id)}"]
    if charge.starts_at is not None:
        clauses.append(f"time >= {bind(moment(charge.starts_at))}")
    if charge.resets_at is not None:
        clauses.append(f"time < {bind(moment(charge.resets_at))}")
    return " AND ".join(clauses), params


_PG_MIGRATIONS = (
    """
    CREATE TABLE lynkr_spend_log (
        request_id text PRIMARY KEY,
        time timestamptz NOT NULL,
        key_id text NOT NULL,
        team text NOT NULL,
        customer text,
        org text NOT NULL,
        tier text NOT NULL,
        provider text NOT NULL,
        upstream text NOT NULL,
        model text NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cache_read_tokens bigint NOT NULL,
        cache_write_tokens bigint NOT NULL,
        reasoning_tokens bigint NOT NULL,
        cost_nanos bigint NOT NULL,
        usage_source text NOT NULL,
        status integer NOT NULL,
        outcome text NOT NULL,
        latency_ms integer NOT NULL,
        flags jsonb NOT NULL
    );
    CREATE INDEX lynkr_spend_log_by_team ON lynkr_spend_log (team, time);
    CREATE INDEX lynkr_spend_log_by_key ON lynkr_spend_log (key_id, time);
    CREATE INDEX lynkr_spend_log_by_org ON lynkr_spend_log (org, customer, time);
    """,
    "ALTER TABLE lynkr_spend_log ADD COLUMN provider_cost_nanos bigint",
)

_PG_COLUMNS = (
    "request_id", "time", "key_id", "team", "customer", "org", "tier", "provider", "upstream",
    "model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_nanos", "usage_source", "status", "outcome", "latency_ms", "flags",
    "provider_cost_nanos",
)
_PG_TYPES = (
    "text", "timestamptz", "text", "text", "text", "text", "text", "text", "text", "text",
    "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "text", "integer", "text",
    "integer", "jsonb", "bigint",
)


class PostgresLedger(Ledger):
    """The spend log in PostgreSQL, shared by every replica.

    The URL may carry `?schema=NAME` to keep the tables in their own schema.
    Migrations are versioned in `lynkr_schema_migrations` and run under an
    advisory lock, so replicas starting together migrate once.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._url, self.schema = _split_schema(url)
        self._timeout_s = timeout_s
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        settings = {"search_path": self.schema} if self.schema else {}
        try:
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=4, command_timeout=self._timeout_s,
                timeout=self._timeout_s, server_settings=settings, setup=None,
            )
            await self._migrate()
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            raise StoreError(f"postgresql ledger failed to open: {exc}") from exc

    async def _migrate(self) -> None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(7316458)")
                if self.schema:
                    await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS lynkr_schema_migrations "
                    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                current = await connection.fetchval("SELECT coalesce(max(version), 0) FROM lynkr_schema_migrations")
                for version, script in enumerate(_PG_MIGRATIONS, start=1):
                    if version > current:
                        await connection.execute(script)
                        await connection.execute("INSERT INTO lynkr_schema_migrations (version) VALUES ($1)", version)
                        logger.info("postgresql ledger migrated to version %d", version)

    async def _call(self, coroutine: Any, timeout_s: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(coroutine, timeout_s or self._timeout_s)
        except Exception as exc:
            # asyncpg raises several unrelated classes (PostgresError,
            # InterfaceError, InternalClientError, OSError) when the server
            # goes away; all of them mean "not written, try again later".
            raise StoreError(f"postgresql ledger failed: {exc!r}") from exc

    async def write(self, records: Sequence[SpendRecord]) -> None:
        columns: list[list[Any]] = [[] for _ in _PG_COLUMNS]
        for record in records:
            for index, value in enumerate(_pg_row(record)):
                columns[index].append(value)
        unnest = ", ".join(f"${i + 1}::{kind}[]" for i, kind in enumerate(_PG_TYPES))
        sql = (
            f"INSERT INTO lynkr_spend_log ({', '.join(_PG_COLUMNS)}) "
            f"SELECT * FROM unnest({unnest}) ON CONFLICT (request_id) DO NOTHING"
        )
        await self._call(self._pool.execute(sql, *columns))

    async def committed_sum(self, charge: Charge, *, timeout_s: float | None = None) -> int:
        where, params = _where(charge, numbered=True)
        sql = f"SELECT coalesce(sum(cost_nanos), 0)::bigint FROM lynkr_spend_log WHERE {where}"
        timeout = timeout_s or self._timeout_s
        return int(await self._call(self._pool.fetchval(sql, *params, timeout=timeout), timeout))

    async def record(self, request_id: str) -> SpendRecord | None:
        row = await self._call(
            self._pool.fetchrow("SELECT * FROM lynkr_spend_log WHERE request_id = $1", request_id)
        )
        return None if row is None else _pg_record(row)

    async def records(self) -> list[SpendRecord]:
        rows = await self._call(self._pool.fetch("SELECT * FROM lynkr_spend_log ORDER BY time"))
        return [_pg_record(row) for row in rows]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", [None])[0]
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit(parts._replace(query=rest)), schema


def _pg_row(record: SpendRecord) -> tuple[Any, ...]:
    usage = record.usage
    return (
        record.request_id, record.time, record.key_id, record.team, record.customer, record.org,
        record.tier, record.provider, record.upstream, record.model, usage.input_tokens,
        usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
        usage.reasoning_tokens, record.cost_nanos, record.usage_source, record.status,
        record.outcome, record.latency_ms, json.dumps(list(record.flags)),
        record.provider_cost_nanos,
    )


def _pg_record(row: Any) -> SpendRecord:
    return SpendRecord(
        request_id=row["request_id"], time=row["time"], key_id=row["key_id"], team=row["team"],
        customer=row["customer"], org=row["org"], tier=row["tier"], provider=row["provider"],
        upstream=row["upstream"], model=row["model"],
        usage=Usage(
            input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"], cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
        ),
        cost_nanos=row["cost_nanos"], usage_source=row["usage_source"], status=row["status"],
        outcome=row["outcome"], latency_ms=row["latency_ms"], flags=tuple(json.loads(row["flags"])),
        provider_cost_nanos=row["provider_cost_nanos"],
    )
