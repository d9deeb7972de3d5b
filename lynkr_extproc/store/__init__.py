"""Budget stores: where counters, holds and the spend log live."""

from __future__ import annotations

from .base import BudgetStore, Charge, Rejection, Reservation, SpendRecord


async def open_store(
    url: str, *, timeout_s: float, ledger_url: str = "", outbox_url: str = ""
) -> BudgetStore:
    """Open the store named by `url`: sqlite:///path or redis://host:port/db.

    The Redis store also needs the ledger (sqlite:///path or postgresql://...)
    and the local outbox (sqlite:///path).
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        store = SQLiteStore(url[len("sqlite:///") :], timeout_s=timeout_s)
        await store.open()
        return store
    if url.startswith(("redis://", "rediss://")):
        from .ledger import Outbox, PostgresLedger, SQLiteLedger
        from .redis import RedisStore

        if ledger_url.startswith(("postgresql://", "postgres://")):
            ledger = PostgresLedger(ledger_url, timeout_s=timeout_s)
        else:
            ledger = SQLiteLedger(ledger_url[len("sqlite:///") :], timeout_s=timeout_s)
        outbox = Outbox(outbox_url[len("sqlite:///") :], timeout_s=timeout_s)
        redis_store = RedisStore(url, ledger, outbox, timeout_s=timeout_s)
        await redis_store.open()
        return redis_store
    raise ValueError(f"unsupported store URL {url!r}; use sqlite:///path or redis://host:port/db")


__all__ = ["BudgetStore", "Charge", "Rejection", "Reservation", "SpendRecord", "open_store"]
