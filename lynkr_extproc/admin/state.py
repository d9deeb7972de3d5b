"""The admin keys and budgets one process applies, kept in step with the database.

Each replica reads the admin tables' revision every `admin.poll_interval_s`
seconds and reloads every key and budget when it changed. The replica that
makes a change reloads before its API call returns. The gateway reads only
this in-memory copy, so a request never waits on the admin tables, and a
replica that cannot reach them keeps applying the last copy it read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable

from ..config import PERIODS, Config, KeyRecord, Window
from ..errors import AuthenticationError
from .model import Snapshot, StoredBudget, StoredKey
from .store import AdminStore

logger = logging.getLogger(__name__)

POLL_FAILURE_LOG_INTERVAL_S = 60.0


class AdminState:
    """The gateway's admin hook (lynkr_extproc.gateway.AdminHook)."""

    def __init__(
        self, store: AdminStore, config: Callable[[], Config], *, poll_interval_s: float
    ) -> None:
        self.store = store
        self._config = config
        """Returns the running config, which changes on reload."""
        self._poll_interval_s = poll_interval_s
        self.snapshot = Snapshot(-1, (), ())
        self._keys: dict[str, StoredKey] = {}
        self._records: dict[str, KeyRecord] = {}
        self._windows: dict[tuple[str, str], tuple[Window, ...]] = {}
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the admin tables once, then keep polling them in the background."""
        await self.refresh()
        self._poller = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def refresh(self) -> bool:
        """Reload keys and budgets if the admin tables changed; return True if they did."""
        async with self._lock:
            if await self.store.revision() == self.snapshot.revision:
                return False
            self._apply(await self.store.snapshot())
            return True

    def _apply(self, snapshot: Snapshot) -> None:
        """Replace the copy; it never awaits, so no request sees half of a change."""
        keys = {key.sha256: key for key in snapshot.keys}
        budgets: dict[tuple[str, str], list[StoredBudget]] = {}
        for budget in snapshot.budgets:
            budgets.setdefault((budget.level, budget.ident), []).append(budget)
        order = list(PERIODS)
        windows = {
            ident: tuple(
                Window(PERIODS[b.period], b.period, b.limit_nanos)
                for b in sorted(own, key=lambda b: order.index(b.period))
            )
            for ident, own in budgets.items()
        }
        self._keys = keys
        self._records = {
            digest: key.record() for digest, key in keys.items() if key.active
        }
        self._windows = windows
        self.snapshot = snapshot

    async def _poll(self) -> None:
        failures = 0
        logged_at = -POLL_FAILURE_LOG_INTERVAL_S
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                changed = await self.refresh()
            except Exception as exc:  # the loop must outlive any failure
                failures += 1
                if time.monotonic() - logged_at >= POLL_FAILURE_LOG_INTERVAL_S:
                    logger.warning(
                        "admin tables unreadable (%d failed polls so far); keeping the keys "
                        "and budgets of revision %d: %s",
                        failures,
                        self.snapshot.revision,
                        exc,
                    )
                    logged_at = time.monotonic()
                continue
            if failures:
                logger.info(
                    "admin tables readable again after %d failed polls", failures
                )
                failures = 0
            if changed:
                logger.info(
                    "admin state at revision %d: %d stored keys, %d budget windows",
                    self.snapshot.revision,
                    len(self.snapshot.keys),
                    len(self.snapshot.budgets),
                )

    # -- the gateway hook ------------------------------------------------------

    def key_for_digest(self, digest: str) -> KeyRecord | None:
        """Return the admin key with this SHA-256, None if the admin tables have none.

        Raises AuthenticationError for a revoked key, from the admin API or
        from lynkr.yaml, so that the gateway does not fall back to config.keys.
        """
        record = self._records.get(digest)
        if record is None:
            if digest in self._keys:
                raise AuthenticationError(
                    "the virtual key was revoked; ask for a new key"
                )
            return None
        tiers = self._config().tiers
        if record.tiers is not None and not record.tiers <= tiers.keys():
            # A reload removed a tier the key was limited to.
            record = replace(
                record, tiers=frozenset(name for name in record.tiers if name in tiers)
            )
        return record

    def windows_for(self, level: str, ident: str) -> tuple[Window, ...] | None:
        """Return lynkr.yaml's windows with the admin ones in place of their periods.

        None when the admin tables have no window for this level and id.
        """
        own = self._windows.get((level, ident))
        if own is None:
            return None
        periods = {window.period for window in own}
        configured = self._config().budgets.windows_for(level, ident)
        return tuple(w for w in configured if w.period not in periods) + own
