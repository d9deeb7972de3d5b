"""Measure how long rebuilding a lost Redis counter from PostgreSQL takes.

For each ledger size N, the script writes N spend records for one team in
the current month into a fresh PostgreSQL schema, deletes the Redis
counters, and times the admission that finds the team counter missing and
rebuilds it (one indexed SUM over the team's rows of the month, plus the
key, customer and org counters of the same request).

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python bench/rebuild_bench.py [N ...]

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (database
`test`); everything it creates is deleted at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import redis

from lynkr_extproc.periods import period_range
from lynkr_extproc.store import Charge, Rejection, open_store
from zoneinfo import ZoneInfo

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


async def fill(schema: str, rows: int, month_start: datetime) -> None:
    connection = await asyncpg.connect(POSTGRES, server_settings={"search_path": schema})
    try:
        await connection.execute(
            """INSERT INTO lynkr_spend_log
            SELECT 'bench-' || n, $1::timestamptz + (n % 86400) * interval '1 second',
                   'key-' || (n % 50), 'team-' || (n % 20), NULL, 'org-bench', 'SIMPLE',
                   'openai', 'openai', 'gpt-4o-mini', 100, 100, 0, 0, 0, 75000,
                   'reported', 200, 'completed', 10, '[]'::jsonb
            FROM generate_series(1, $2) AS n""",
            month_start, rows,
        )
        await connection.execute("ANALYZE lynkr_spend_log")
    finally:
        await connection.close()


async def measure(rows: int) -> tuple[float, int]:
    token = uuid.uuid4().hex[:10]
    schema, prefix = f"lynkr_bench_{token}", f"lynkr-bench-{token}"
    folder = Path(tempfile.mkdtemp(prefix="lynkr-bench-"))
    now = datetime.now(timezone.utc)
    period, starts, resets = period_range("month", now, ZoneInfo("UTC"))
    store = await open_store(
        f"{REDIS}?prefix={prefix}", timeout_s=30,
        ledger_url=f"{POSTGRES}?schema={schema}", outbox_url=f"sqlite:///{folder / 'outbox.db'}",
    )
    try:
        await fill(schema, rows, starts)
        charges = [
            Charge(level, ident, ident, "monthly", period, 10**15, resets, starts_at=starts, org="org-bench")
            for level, ident in (("virtual_key", "key-1"), ("team", "team-1"), ("org", "org-bench"))
        ]
        started = time.perf_counter()
        result = await store.reserve(uuid.uuid4().hex, charges, 0, ttl_s=60)
        elapsed = time.perf_counter() - started
        assert not isinstance(result, Rejection)
        committed, _ = await store.balance(charges[1])
        return elapsed, committed
    finally:
        await store.close()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        connection = await asyncpg.connect(POSTGRES)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [10_000, 100_000, 1_000_000]
    print("| ledger rows (month) | rows of the team | rebuild of 3 counters (ms) |")
    print("|---:|---:|---:|")
    for rows in sizes:
        elapsed, committed = asyncio.run(measure(rows))
        team_rows = committed // 75_000
        print(f"| {rows:,} | {team_rows:,} | {elapsed * 1000:.1f} |")


if __name__ == "__main__":
    main()
