"""Several ext_proc processes behind one Envoy share one budget."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lynkr_extproc import envoy_config
from lynkr_extproc.config import parse_config
from lynkr_extproc.gateway import Gateway, Tenant
from lynkr_extproc.store import open_store
from tests.support import cases
from tests.support.backends import backend_settings
from tests.support.envoy import Envoy
from tests.support.processes import ServeProcess
from tests.support.stack import Stack
from tests.support.upstream import ReplayUpstream, Reply

pytestmark = pytest.mark.e2e

PER_REQUEST = 75_000
"""Nano-dollars held and then charged per request: 100 input and 100 output
tokens of gpt-4o-mini at $0.15 and $0.60 per million."""


@pytest.fixture(params=["sqlite", "redis+postgresql"])
def backend(request, tmp_path: Path):
    for settings in backend_settings(request.param, tmp_path):
        yield request.param, settings


def test_three_processes_never_overspend(backend, tmp_path: Path):
    """500 concurrent requests through 3 processes against a budget for 100: 100 admitted, 0 holds left."""
    name, settings = backend
    upstream = ReplayUpstream(Reply.json({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 100}}))
    with upstream:
        document = cases.document(settings, openai_url=upstream.url)
        document["budgets"] = {"team": {"t1": [{"period": "month", "limit_usd": 100 * PER_REQUEST / 10**9}]}}
        # Generous deadlines: the test measures overspend, and 500 requests
        # on 2 cores can take a store call past the 1 s default.
        document["server"]["store_timeout_ms"] = 5000
        document["envoy"]["message_timeout_ms"] = 10000
        replicas = []
        for index in range(3):
            replica = dict(document, server=dict(document["server"], listen=f"127.0.0.1:{cases.free_port()}"))
            replicas.append(ServeProcess(replica, tmp_path, f"replica-{index}"))
        document["envoy"]["ext_proc_address"] = [replica.address for replica in replicas]
        config = parse_config(document)
        body = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "x" * 400}]}
        try:
            for replica in replicas:
                replica.start()
            with Envoy(envoy_config.bootstrap(config)) as envoy:
                replies = _send_concurrently(config.envoy.listen_port, body, 500)
                statuses = [status for status, _ in replies]
                endpoints = _endpoint_requests(envoy)
        finally:
            exits = [replica.terminate() for replica in replicas]
    committed, holds, records = asyncio.run(_read_store(config))
    admitted = statuses.count(200)
    overspend = max(0, committed - 100 * PER_REQUEST)
    print(
        f"replicas [{name}]: admitted={admitted} rejected={statuses.count(429)} "
        f"committed_nanos={committed} overspend_nanos={overspend} leaked_holds={holds} "
        f"records={records} streams_per_process={endpoints}"
    )
    assert exits == [0, 0, 0]
    assert admitted == 100
    # The bodies of any other replies say whether the store or Envoy failed.
    others = {body for status, body in replies if status not in (200, 429)}
    assert statuses.count(429) == 400, others
    assert committed == 100 * PER_REQUEST
    assert overspend == 0
    assert holds == 0
    assert records == 100
    assert len(endpoints) == 3
    assert all(count > 0 for count in endpoints.values())


def _send_concurrently(port: int, body: dict, count: int) -> list[tuple[int, bytes]]:
    barrier = threading.Barrier(count)
    stack = Stack.__new__(Stack)
    stack.port = port

    def send(_: int) -> tuple[int, bytes]:
        barrier.wait(60)
        headers = {"x-api-key": cases.secret("vk-a")}
        reply = stack.post("/v1/chat/completions", body, headers, timeout_s=120)
        return reply.status, reply.body

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _endpoint_requests(envoy: Envoy) -> dict[str, int]:
    """Return the ext_proc streams each endpoint served, from Envoy's /clusters."""
    url = f"http://127.0.0.1:{envoy.admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    counts = {}
    for line in lines:
        if line.startswith("lynkr_extproc::") and "::rq_total::" in line:
            _, address, _, value = line.split("::")
            counts[address] = int(value)
    return counts


async def _read_store(config) -> tuple[int, int, int]:
    """Return the team's committed spend, unexpired holds and spend records."""
    store = await open_store(
        config.store_url, timeout_s=5, ledger_url=config.ledger_url, outbox_url=config.outbox_url
    )
    try:
        key = next(iter(config.keys.values()))
        team = [c for c in Gateway(config, store).charges(Tenant(key, None)) if c.level == "team"][0]
        committed, _ = await store.balance(team)
        holds = await store.holds_in_flight()
        if config.store_url.startswith("sqlite:///"):
            with sqlite3.connect(config.store_url[len("sqlite:///"):]) as db:
                records = db.execute("SELECT count(*) FROM spend_log").fetchone()[0]
        else:
            records = len(await store.ledger.records())
        return committed, holds, records
    finally:
        await store.close()
