"""The admin tables' database, which is that of the configured budget store.

| server.store | server.ledger | admin tables and spend log |
|---|---|---|
| sqlite:///PATH | - | the store file PATH, through its own connection |
| redis://... | sqlite:///PATH | the ledger file PATH, through its own connection |
| redis://... | postgresql://...[?schema=NAME] | the ledger database, through an asyncpg pool |

Every mutation increments a revision number in the same transaction, so a
replica finds out whether anything changed by reading one row.

NOTE: a SQLite file is shared only by the processes of one host, so with a
SQLite ledger, admin changes reach only the replicas on the host that made
them, just as that ledger holds only its own host's spend.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from ..config import Config
from ..pricing import Usage
from .model import Snapshot, SpendGroup, SpendQuery, StoredBudget, StoredKey

REPORT_TIMEOUT_S = 60.0
"""Deadline of one spend report, which sums every record of its time range."""


class AdminStore(abc.ABC):
    """Admin keys, admin budgets and spend aggregates in one database."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the admin tables."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def revision(self) -> int:
        """Return the number of changes made so far."""

    @abc.abstractmethod
    async def snapshot(self) -> Snapshot:
        """Return every key and budget, read in one transaction."""

    @abc.abstractmethod
    async def change_keys(
        self, *, revoke_id: str | None, revoked_at: datetime, add: Sequence[StoredKey]
    ) -> None:
        """Revoke the active admin key `revoke_id` and insert `add`, in one transaction.

        Raises ConflictError, changing nothing, when `revoke_id` has no
        active key or an inserted row collides with an active key id or a
        stored hash: both mean that another request changed the same key.
        """

    @abc.abstractmethod
    async def set_budget(self, budget: StoredBudget) -> None:
        """Insert or replace the window of (level, ident, period)."""

    @abc.abstractmethod
    async def delete_budget(self, level: str, ident: str, period: str) -> bool:
        """Delete one window; return False when there was none."""

    @abc.abstractmethod
    async def spend_report(self, query: SpendQuery) -> list[SpendGroup]:
        """Return the sums of each group of matching spend records, unordered."""


def admin_store_for(config: Config) -> AdminStore:
    """Return the (unopened) admin store for the database of config's budget store."""
    if config.store_url.startswith("sqlite:///"):
        from .sqlite import SQLiteAdminStore

        return SQLiteAdminStore(
            config.store_url[len("sqlite:///") :],
            STORE_SPEND_LOG,
            timeout_s=_timeout(config),
        )
    if config.ledger_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresAdminStore

        return PostgresAdminStore(config.ledger_url, timeout_s=_timeout(config))
    from .sqlite import SQLiteAdminStore

    return SQLiteAdminStore(
        config.ledger_url[len("sqlite:///") :],
        LEDGER_SPEND_LOG,
        timeout_s=_timeout(config),
    )


def _timeout(config: Config) -> float:
    return config.store_timeout_ms / 1000


# -- spend log queries -------------------------------------------------------


@dataclass(frozen=True)
class SpendLog:
    """The spend log layout of one backend: an SQL expression per value."""

    table: str
    dimensions: Mapping[str, str]
    """Expression of each dimension in model.DIMENSIONS."""
    tokens: tuple[str, str, str, str, str]
    """Input, output, cache read, cache write and reasoning token expressions."""
    cost: str = "cost_nanos"
    time: str = "time"


_COLUMNS = {
    "virtual_key": "key_id",
    "team": "team",
    # A record without a customer groups as "".
    "customer": "coalesce(customer, '')",
    "org": "org",
    "tier": "tier",
    "model": "model",
    "provider": "provider",
}
_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

STORE_SPEND_LOG = SpendLog("spend_log", _COLUMNS, _TOKEN_COLUMNS)
"""The SQLite store's spend_log: one column per value."""

LEDGER_SPEND_LOG = SpendLog(
    "spend_log",
    {
        **_COLUMNS,
        "tier": "json_extract(record, '$.tier')",
        "model": "json_extract(record, '$.model')",
        "provider": "json_extract(record, '$.provider')",
    },
    tuple(f"json_extract(record, '$.usage.{column}')" for column in _TOKEN_COLUMNS),  # type: ignore[arg-type]
)
"""The SQLite ledger's spend_log, which keeps all but the tenant ids in a JSON record."""

POSTGRES_SPEND_LOG = SpendLog("lynkr_spend_log", _COLUMNS, _TOKEN_COLUMNS)


def spend_sql(
    log: SpendLog,
    query: SpendQuery,
    *,
    placeholder: Callable[[int], str],
    moment: Callable[[datetime], Any],
) -> tuple[str, list[Any]]:
    """Build the aggregate query of a spend report and its parameters.

    `placeholder(n)` writes the n-th parameter (1-based) in the driver's
    style; `moment` converts a time bound to the type the table stores.
    Only expressions from `log` reach the SQL text; values are parameters.
    """
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    conditions = [f"{log.time} < {bind(moment(query.end))}"]
    if query.start is not None:
        conditions.append(f"{log.time} >= {bind(moment(query.start))}")
    for dimension, value in query.filters:
        conditions.append(f"{log.dimensions[dimension]} = {bind(value)}")
    groups = [log.dimensions[dimension] for dimension in query.group_by]
    sums = [f"coalesce(sum({expression}), 0)" for expression in (*log.tokens, log.cost)]
    sql = f"SELECT {', '.join([*groups, 'count(*)', *sums])} FROM {log.table} WHERE {' AND '.join(conditions)}"
    if groups:
        sql += f" GROUP BY {', '.join(groups)}"
    return sql, params


def spend_groups(rows: Sequence[Sequence[Any]], group_size: int) -> list[SpendGroup]:
    """Turn result rows of spend_sql into SpendGroups."""
    groups = []
    for row in rows:
        values = [int(value) for value in row[group_size + 1 :]]
        groups.append(
            SpendGroup(
                group=tuple(
                    "" if value is None else str(value) for value in row[:group_size]
                ),
                requests=int(row[group_size]),
                usage=Usage(*values[:5]),
                cost_nanos=values[5],
            )
        )
    return groups
