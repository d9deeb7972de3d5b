"""Budget stores: where counters, holds and the spend log live."""

from __future__ import annotations

from .base import BudgetStore, Charge, Rejection, Reservation, SpendRecord


async def open_store(url: str, *, timeout_s: float) -> BudgetStore:
    """Open the store named by `url` (sqlite:///path)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        store = SQLiteStore(url[len("sqlite:///") :], timeout_s=timeout_s)
        await store.open()
        return store
    raise ValueError(f"unsupported store URL {url!r}; use sqlite:///path")


__all__ = ["BudgetStore", "Charge", "Rejection", "Reservation", "SpendRecord", "open_store"]
