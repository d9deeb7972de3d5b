"""Apply a changed lynkr.yaml to the running service, on SIGHUP or file change.

Budgets, keys, tiers, routing, prices and stream settings take effect for
the next request; streams in flight finish with the config they started
with. Settings bound at start (listen addresses, store URLs, metrics) are
reported and keep their old values until a restart. A config that fails
validation is rejected with its error and the old one stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from .config import load_config
from .errors import ConfigError
from .gateway import Gateway

logger = logging.getLogger(__name__)

RESTART_ONLY = (
    "listen", "store_url", "ledger_url", "outbox_url", "metrics_listen", "store_timeout_ms",
    "workers", "admin",
)


def reload(gateway: Gateway, path: Path) -> bool:
    """Load `path` into the gateway; return False and keep the old config if invalid."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        logger.error("config reload rejected, keeping the running config: %s", exc)
        return False
    for name in RESTART_ONLY:
        if getattr(config, name) != getattr(gateway.config, name):
            logger.warning("config reload: server setting %s changes only after a restart", name)
    gateway.apply(config)
    logger.info("config reloaded from %s", path)
    return True


async def watch(gateway: Gateway, path: Path, *, interval_s: float = 2.0) -> None:
    """Reload on SIGHUP, and when the file's modification time changes."""
    loop = asyncio.get_running_loop()
    hangup = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hangup.set)
    seen = _mtime(path)
    try:
        while True:
            try:
                await asyncio.wait_for(hangup.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
            changed = _mtime(path)
            if hangup.is_set() or changed != seen:
                hangup.clear()
                seen = changed
                reload(gateway, path)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
