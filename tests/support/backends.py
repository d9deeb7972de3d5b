"""Budget store backends for parametrized tests, each cleaned up after use.

"sqlite" is one file; "redis" is the shared Redis on 127.0.0.1:6379 with a
local SQLite ledger; "redis+postgresql" adds the PostgreSQL ledger on
127.0.0.1:5432 (database `test`). Each test gets its own Redis key prefix
and PostgreSQL schema, deleted afterwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import redis

BACKENDS = ("sqlite", "redis", "redis+postgresql")
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_settings(backend: str, folder: Path, token: str) -> dict[str, str]:
    """Return the server.store, ledger and outbox settings of a backend."""
    if backend == "sqlite":
        return {"store": f"sqlite:///{folder / 'store.db'}"}
    settings = {
        "store": f"{REDIS_URL}?prefix=lynkr-test-{token}",
        "outbox": f"sqlite:///{folder / 'outbox.db'}",
        "ledger": f"sqlite:///{folder / 'ledger.db'}",
    }
    if backend == "redis+postgresql":
        settings["ledger"] = f"{POSTGRES_URL}?schema=lynkr_test_{token}"
    return settings


def clean(backend: str, token: str) -> None:
    """Delete the Redis keys and PostgreSQL schema a test created."""
    if backend == "sqlite":
        return
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"lynkr-test-{token}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    if backend == "redis+postgresql":
        import asyncio

        import asyncpg

        async def drop() -> None:
            connection = await asyncpg.connect(POSTGRES_URL)
            await connection.execute(f'DROP SCHEMA IF EXISTS "lynkr_test_{token}" CASCADE')
            await connection.close()

        asyncio.run(drop())


def backend_settings(backend: str, folder: Path) -> Iterator[dict[str, str]]:
    token = uuid.uuid4().hex[:12]
    try:
        yield server_settings(backend, folder, token)
    finally:
        clean(backend, token)
