"""Admin tables in a SQLite file: the SQLite store's file, or the SQLite ledger's.

The budget store or ledger keeps its own connection to the same file. This
module opens a second one and uses it from its own worker thread, so that
the event loop never waits on the disk. Writes take SQLite's write lock
(BEGIN IMMEDIATE) and are fsync'd (synchronous=FULL), as the store's are.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from ..errors import StoreError
from .errors import ConflictError
from .model import (
    Snapshot,
    SpendGroup,
    SpendQuery,
    StoredBudget,
    StoredKey,
    decode_names,
    encode_names,
)
from .store import REPORT_TIMEOUT_S, AdminStore, SpendLog, spend_groups, spend_sql

T = TypeVar("T")

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS admin_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO admin_revision VALUES (1, 0);
    CREATE TABLE IF NOT EXISTS admin_keys (
        sha256 TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        team TEXT NOT NULL,
        org TEXT NOT NULL,
        customers TEXT,
        tiers TEXT,
        models TEXT,
        tier_override INTEGER NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS admin_keys_active_id ON admin_keys (key_id) WHERE revoked_at IS NULL;
    CREATE TABLE IF NOT EXISTS admin_budgets (
        level TEXT NOT NULL,
        ident TEXT NOT NULL,
        period TEXT NOT NULL,
        limit_nanos INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (level, ident, period)
    )
    """,
)
"""Schema versions, applied in order; admin_schema_version records those applied."""

_KEY_COLUMNS = (
    "key_id, sha256, team, org, customers, tiers, models, tier_override, source, "
    "created_at, revoked_at"
)


class SQLiteAdminStore(AdminStore):
    def __init__(self, path: str, spend_log: SpendLog, *, timeout_s: float) -> None:
        self._path = path
        self._spend_log = spend_log
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lynkr-admin-sqlite")
        self._db: sqlite3.Connection | None = None

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
        self._db = db
        self._transaction(self._migrate, write=True)

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS admin_schema_version (version INTEGER NOT NULL)"
        )
        current = (
            db.execute("SELECT max(version) FROM admin_schema_version").fetchone()[0]
            or 0
        )
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO admin_schema_version VALUES (?)", (version,))

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- plumbing ------------------------------------------------------------

    async def _run(
        self, function: Callable[..., T], *args: Any, timeout_s: float | None = None
    ) -> T:
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, function, *args
        )
        timeout = timeout_s or self._timeout_s
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise StoreError(
                f"admin tables in {self._path} timed out after {timeout}s"
            ) from None
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"the key was changed at the same time by another request ({exc}); retry"
            ) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"admin tables in {self._path} failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"admin tables in {self._path} are closed")
        return self._db

    def _reading(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a read transaction, which sees one consistent state."""
        return self._transaction(body, write=False)

    def _writing(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a write transaction that also increments the revision."""
        return self._transaction(body, write=True)

    def _transaction(
        self, body: Callable[[sqlite3.Connection], T], *, write: bool
    ) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = body(db)
            if write:
                db.execute("UPDATE admin_revision SET revision = revision + 1")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # -- state ---------------------------------------------------------------

    async def revision(self) -> int:
        return await self._run(
            lambda: (
                self._connection()
                .execute("SELECT revision FROM admin_revision")
                .fetchone()[0]
            )
        )

    async def snapshot(self) -> Snapshot:
        def read(db: sqlite3.Connection) -> Snapshot:
            revision = db.execute("SELECT revision FROM admin_revision").fetchone()[0]
            keys = db.execute(f"SELECT {_KEY_COLUMNS} FROM admin_keys").fetchall()
            budgets = db.execute(
                "SELECT level, ident, period, limit_nanos, updated_at FROM admin_budgets"
            ).fetchall()
            return Snapshot(
                revision,
                tuple(_key(row) for row in keys),
                tuple(
                    StoredBudget(level, ident, period, limit, _time(updated))
                    for level, ident, period, limit, updated in budgets
                ),
            )

        return await self._run(self._reading, read)

    async def change_keys(
        self, *, revoke_id: str | None, revoked_at: datetime, add: Sequence[StoredKey]
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            if revoke_id is not None:
                revoked = db.execute(
                    "UPDATE admin_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                    (_text(revoked_at), revoke_id),
                ).rowcount
                if revoked == 0:
                    raise ConflictError(
                        f"key {revoke_id!r} was revoked at the same time by another request"
                    )
            db.executemany(
                f"INSERT INTO admin_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_key_row(key) for key in add],
            )

        await self._run(self._writing, write)

    async def set_budget(self, budget: StoredBudget) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO admin_budgets VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (level, ident, period) DO UPDATE SET "
                "limit_nanos = excluded.limit_nanos, updated_at = excluded.updated_at",
                (
                    budget.level,
                    budget.ident,
                    budget.period,
                    budget.limit_nanos,
                    _text(budget.updated_at),
                ),
            )

        await self._run(self._writing, write)

    async def delete_budget(self, level: str, ident: str, period: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            return (
                db.execute(
                    "DELETE FROM admin_budgets WHERE level = ? AND ident = ? AND period = ?",
                    (level, ident, period),
                ).rowcount
                == 1
            )

        return await self._run(self._writing, write)

    # -- spend ---------------------------------------------------------------

    async def spend_report(self, query: SpendQuery) -> list[SpendGroup]:
        sql, params = spend_sql(
            self._spend_log, query, placeholder=lambda _: "?", moment=_text
        )

        def read() -> list[SpendGroup]:
            rows = self._connection().execute(sql, params).fetchall()
            return spend_groups(rows, len(query.group_by))

        return await self._run(read, timeout_s=REPORT_TIMEOUT_S)


def _text(moment: datetime) -> str:
    """Write a time as the spend log does: ISO 8601 in UTC, which sorts as text."""
    return moment.astimezone(timezone.utc).isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _key_row(key: StoredKey) -> tuple[Any, ...]:
    return (
        key.key_id,
        key.sha256,
        key.team,
        key.org,
        encode_names(key.customers),
        encode_names(key.tiers),
        encode_names(key.models),
        int(key.tier_override),
        key.source,
        _text(key.created_at),
        None if key.revoked_at is None else _text(key.revoked_at),
    )


def _key(row: Sequence[Any]) -> StoredKey:
    return StoredKey(
        key_id=row[0],
        sha256=row[1],
        team=row[2],
        org=row[3],
        customers=decode_names(row[4]),
        tiers=decode_names(row[5]),
        models=decode_names(row[6]),
        tier_override=bool(row[7]),
        source=row[8],
        created_at=datetime.fromisoformat(row[9]),
        revoked_at=_time(row[10]),
    )
