"""Admin tables in the PostgreSQL ledger database, shared by every replica.

The pool connects with the ledger URL, so `?schema=NAME` puts the admin
tables beside `lynkr_spend_log` in that schema.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StoreError
from .errors import AdminError, ConflictError
from .model import (
    Snapshot,
    SpendGroup,
    SpendQuery,
    StoredBudget,
    StoredKey,
    decode_names,
    encode_names,
)
from .store import (
    POSTGRES_SPEND_LOG,
    REPORT_TIMEOUT_S,
    AdminStore,
    spend_groups,
    spend_sql,
)

logger = logging.getLogger(__name__)

MIGRATION_LOCK = 7316458
"""The ledger's advisory lock id: holding it serializes our CREATE SCHEMA with the ledger's."""

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS lynkr_admin_revision (
        id integer PRIMARY KEY CHECK (id = 1),
        revision bigint NOT NULL
    );
    INSERT INTO lynkr_admin_revision VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
    CREATE TABLE IF NOT EXISTS lynkr_admin_keys (
        sha256 text PRIMARY KEY,
        key_id text NOT NULL,
        team text NOT NULL,
        org text NOT NULL,
        customers text,
        tiers text,
        models text,
        tier_override boolean NOT NULL,
        source text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
    );
    CREATE UNIQUE INDEX IF NOT EXISTS lynkr_admin_keys_active_id
        ON lynkr_admin_keys (key_id) WHERE revoked_at IS NULL;
    CREATE TABLE IF NOT EXISTS lynkr_admin_budgets (
        level text NOT NULL,
        ident text NOT NULL,
        period text NOT NULL,
        limit_nanos bigint NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (level, ident, period)
    );
    """,
)
"""Schema versions, applied in order; lynkr_admin_schema_migrations records those applied."""

_KEY_COLUMNS = (
    "key_id, sha256, team, org, customers, tiers, models, tier_override, source, "
    "created_at, revoked_at"
)
_SELECT_REVISION = "SELECT revision FROM lynkr_admin_revision"
_SELECT_KEYS = f"SELECT {_KEY_COLUMNS} FROM lynkr_admin_keys"
_SELECT_BUDGETS = (
    "SELECT level, ident, period, limit_nanos, updated_at FROM lynkr_admin_budgets"
)
_INSERT_KEY = (
    f"INSERT INTO lynkr_admin_keys ({_KEY_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
_REVOKE_KEY = (
    "UPDATE lynkr_admin_keys SET revoked_at = $1 "
    "WHERE key_id = $2 AND revoked_at IS NULL"
)
_UPSERT_BUDGET = (
    "INSERT INTO lynkr_admin_budgets VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (level, ident, period) DO UPDATE SET "
    "limit_nanos = excluded.limit_nanos, updated_at = excluded.updated_at"
)
_DELETE_BUDGET = (
    "DELETE FROM lynkr_admin_budgets WHERE level = $1 AND ident = $2 AND period = $3"
)


class PostgresAdminStore(AdminStore):
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._url, self.schema = _split_schema(url)
        self._timeout_s = timeout_s
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        settings = {"search_path": self.schema} if self.schema else {}
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=2,
                command_timeout=REPORT_TIMEOUT_S,
                timeout=self._timeout_s,
                server_settings=settings,
            )
            await self._migrate()
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            raise StoreError(f"postgresql admin tables failed to open: {exc}") from exc

    async def _migrate(self) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            if self.schema:
                await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS lynkr_admin_schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await connection.fetchval(
                "SELECT coalesce(max(version), 0) FROM lynkr_admin_schema_migrations"
            )
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    await connection.execute(script)
                    await connection.execute(
                        "INSERT INTO lynkr_admin_schema_migrations (version) VALUES ($1)",
                        version,
                    )
                    logger.info(
                        "postgresql admin tables migrated to version %d", version
                    )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _call(self, coroutine: Any, timeout_s: float | None = None) -> Any:
        import asyncpg

        try:
            return await asyncio.wait_for(coroutine, timeout_s or self._timeout_s)
        except AdminError:
            raise
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(
                f"the key was changed at the same time by another request ({exc}); retry"
            ) from exc
        except Exception as exc:
            # As in the ledger: asyncpg raises several unrelated classes
            # when the server goes away, all meaning "failed, try later".
            raise StoreError(f"postgresql admin tables failed: {exc!r}") from exc

    # -- state ---------------------------------------------------------------

    async def revision(self) -> int:
        return int(await self._call(self._pool.fetchval(_SELECT_REVISION)))

    async def snapshot(self) -> Snapshot:
        async def read() -> Snapshot:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                revision = await connection.fetchval(_SELECT_REVISION)
                keys = await connection.fetch(_SELECT_KEYS)
                budgets = await connection.fetch(_SELECT_BUDGETS)
            return Snapshot(
                int(revision),
                tuple(_key(row) for row in keys),
                tuple(StoredBudget(*row) for row in budgets),
            )

        return await self._call(read())

    async def _write(
        self,
        statements: Sequence[tuple[str, Sequence[Any]]],
        check: Callable[[list[str]], None] | None = None,
    ) -> list[str]:
        """Run statements in one transaction that also increments the revision.

        `check` gets the command tags, such as "UPDATE 1", and may raise to
        roll the transaction back.
        """

        async def run() -> list[str]:
            async with self._pool.acquire() as connection, connection.transaction():
                results = [
                    await connection.execute(sql, *args) for sql, args in statements
                ]
                if check is not None:
                    check(results)
                await connection.execute(
                    "UPDATE lynkr_admin_revision SET revision = revision + 1"
                )
            return results

        return await self._call(run())

    async def change_keys(
        self, *, revoke_id: str | None, revoked_at: datetime, add: Sequence[StoredKey]
    ) -> None:
        statements: list[tuple[str, Sequence[Any]]] = []
        if revoke_id is not None:
            statements.append((_REVOKE_KEY, (revoked_at, revoke_id)))
        statements += [(_INSERT_KEY, _key_row(key)) for key in add]

        def check(tags: list[str]) -> None:
            if revoke_id is not None and tags[0] == "UPDATE 0":
                raise ConflictError(
                    f"key {revoke_id!r} was revoked at the same time by another request"
                )

        await self._write(statements, check)

    async def set_budget(self, budget: StoredBudget) -> None:
        values = (
            budget.level,
            budget.ident,
            budget.period,
            budget.limit_nanos,
            budget.updated_at,
        )
        await self._write([(_UPSERT_BUDGET, values)])

    async def delete_budget(self, level: str, ident: str, period: str) -> bool:
        results = await self._write([(_DELETE_BUDGET, (level, ident, period))])
        return results[0] == "DELETE 1"

    # -- spend ---------------------------------------------------------------

    async def spend_report(self, query: SpendQuery) -> list[SpendGroup]:
        sql, params = spend_sql(
            POSTGRES_SPEND_LOG,
            query,
            placeholder=lambda n: f"${n}",
            moment=lambda moment: moment,
        )
        rows = await self._call(
            self._pool.fetch(sql, *params, timeout=REPORT_TIMEOUT_S), REPORT_TIMEOUT_S
        )
        return spend_groups(rows, len(query.group_by))


def _split_schema(url: str) -> tuple[str, str | None]:
    """Remove `schema=NAME` from the URL's query, which asyncpg would reject, and return it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((value for name, value in query if name == "schema"), None)
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _key_row(key: StoredKey) -> tuple[Any, ...]:
    return (
        key.key_id,
        key.sha256,
        key.team,
        key.org,
        encode_names(key.customers),
        encode_names(key.tiers),
        encode_names(key.models),
        key.tier_override,
        key.source,
        key.created_at,
        key.revoked_at,
    )


def _key(row: Any) -> StoredKey:
    return StoredKey(
        key_id=row["key_id"],
        sha256=row["sha256"],
        team=row["team"],
        org=row["org"],
        customers=decode_names(row["customers"]),
        tiers=decode_names(row["tiers"]),
        models=decode_names(row["models"]),
        tier_override=row["tier_override"],
        source=row["source"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
