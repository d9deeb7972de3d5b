"""The real ext_proc server on a fixed clock, with direct store access."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import grpc

from lynkr_extproc.config import parse_config
from lynkr_extproc.periods import period_bounds

from .grpc_client import ExtProcStream
from .service import ServiceThread

NOW = datetime(2026, 3, 31, 23, 0, 0, tzinfo=timezone.utc)


class Harness:
    """A running server for one config document, with store helpers."""

    def __init__(self, document: dict, *, clock=lambda: NOW) -> None:
        self.document = document
        self.config = parse_config(document)
        self.service = ServiceThread(self.config, clock=clock)
        self.path = self.config.store_url[len("sqlite:///") :]

    def __enter__(self) -> "Harness":
        self.service.__enter__()
        self.channel = grpc.insecure_channel(self.config.listen)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        self.service.__exit__(*exc)

    def stream(self) -> ExtProcStream:
        return ExtProcStream(self.channel)

    def seed(self, level: str, counter: str, usd: str, period: str = "month") -> None:
        """Set the committed spend of one window, as earlier requests would have."""
        key, _ = period_bounds(period, NOW, ZoneInfo("UTC"))
        nanos = int(round(float(usd) * 10**9))
        with sqlite3.connect(self.path) as db:
            db.execute("INSERT INTO budget_counters VALUES (?, ?, ?, ?)", (level, counter, key, nanos))

    def committed(self, level: str, counter: str, period: str = "month") -> int:
        key, _ = period_bounds(period, NOW, ZoneInfo("UTC"))
        with sqlite3.connect(self.path) as db:
            row = db.execute(
                "SELECT committed FROM budget_counters WHERE level=? AND counter=? AND period=?",
                (level, counter, key),
            ).fetchone()
        return row[0] if row else 0

    def holds(self) -> int:
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT count(*) FROM budget_holds").fetchone()[0]

    def records(self, expected: int = 0, timeout_s: float = 10.0) -> list[dict]:
        """Return the spend log, waiting up to timeout_s for `expected` rows.

        A cancelled stream records its spend once the server has seen the
        cancellation, which happens after the client's cancel returns.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.service.drain()
            with sqlite3.connect(self.path) as db:
                db.row_factory = sqlite3.Row
                rows = [dict(row) for row in db.execute("SELECT * FROM spend_log ORDER BY time")]
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)
