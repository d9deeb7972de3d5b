"""The real ext_proc server on a fixed clock, with store helpers for any backend."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import grpc

from lynkr_extproc.config import parse_config
from lynkr_extproc.periods import period_range
from lynkr_extproc.pricing import Usage
from lynkr_extproc.store import Charge, Reservation, SpendRecord

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

    def charge(self, level: str, ident: str, period: str = "month", org: str = "o1") -> Charge:
        """Return the window of `ident` at `level`; customers may be given as ORG/ID."""
        if level == "customer" and "/" in ident:
            org, ident = ident.split("/", 1)
        counter = f"{org}/{ident}" if level == "customer" else ident
        key, starts, resets = period_range(period, NOW, ZoneInfo("UTC"))
        return Charge(level, ident, counter, period, key, 0, resets, starts_at=starts, org=org)

    def seed(self, level: str, ident: str, usd: str, period: str = "month", org: str = "o1") -> None:
        """Commit spend to one window through the store, as an earlier request would."""
        charge = self.charge(level, ident, period, org)
        record = SpendRecord(
            request_id=f"seed-{uuid.uuid4().hex}",
            time=NOW,
            key_id=charge.id if level == "virtual_key" else "seed",
            team=charge.id if level == "team" else "seed",
            customer=charge.id if level == "customer" else None,
            org=charge.org,
            tier="SEED", provider="seed", upstream="seed", model="seed",
            usage=Usage(), cost_nanos=int(round(float(usd) * 10**9)),
            usage_source="reported", status=200, outcome="completed", latency_ms=0,
        )
        reservation = Reservation(uuid.uuid4().hex, (charge,), 0, None)
        self.service.run(self.service.store.settle(reservation, record))
        self.seeded = getattr(self, "seeded", set()) | {record.request_id}

    def committed(self, level: str, ident: str, period: str = "month", org: str = "o1") -> int:
        return self.service.run(self.service.store.balance(self.charge(level, ident, period, org)))[0]

    def holds(self) -> int:
        return self.service.run(self.service.store.holds_in_flight())

    def records(self, expected: int = 0, timeout_s: float = 10.0) -> list[dict]:
        """Return the spend log without seeded rows, waiting up to timeout_s for `expected` rows.

        A cancelled stream records its spend once the server has seen the
        cancellation, which happens after the client's cancel returns.
        """
        deadline = time.monotonic() + timeout_s
        seeded = getattr(self, "seeded", set())
        while True:
            self.service.drain()
            rows = [row for row in self._all_records() if row["request_id"] not in seeded]
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def _all_records(self) -> list[dict]:
        store = self.service.store
        if self.config.store_url.startswith("sqlite:///"):
            with sqlite3.connect(self.path) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute("SELECT * FROM spend_log ORDER BY time")]
        self.service.run(store.flush())
        return [_row(record) for record in self.service.run(store.ledger.records())]


def _row(record: SpendRecord) -> dict:
    """Flatten a record into the column layout of the SQLite spend_log."""
    row = asdict(record)
    row.update(row.pop("usage"))
    row["flags"] = json.dumps(list(record.flags))
    return row
