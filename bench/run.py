"""Benchmark lynkr-extproc against Envoy alone, an echo ext_proc and LiteLLM.

Run from the repository root. bench/run.sh installs wrk, LiteLLM's venv,
matplotlib, h2 and py-spy first, then calls this script:

    bench/run.sh [--ref HEAD] [--rounds 4] [--duration 4]

Every configuration sends the same requests to the same fast local
upstream (bench/fast_upstream.py). The configurations take turns in each
round, so that drift on this shared machine falls on all of them alike. The
script writes docs/benchmarks.md, docs/benchmarks.png and the raw numbers
in bench/results/latest.json. Everything listens on 127.0.0.1, and every
load loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "latest.json"
DOCS = ROOT / "docs"

PATH = "/v1/chat/completions"
CONNECTIONS = (1, 32)
SSE_EVENTS = 20
SSE_GAP_MS = 5.0
SSE_CONCURRENT = 32
SLOW_GAP_MS = 10_000.0
SLOW_EVENTS = 60
"""At one event per 10 s, a slow stream ends by itself after 10 minutes."""

REQUEST = {
    "model": "gpt-4o-mini",
    "max_tokens": 256,
    "messages": [
        {
            "role": "system",
            "content": "You are a coding assistant for a software team. Answer briefly, "
            "name the files you refer to and say when you are unsure.",
        },
        {
            "role": "user",
            "content": (
                "Our service reads a JSON request, looks up the caller's team, checks "
                "the team's monthly budget and forwards the call to a model provider. "
                "Requests arrive from several client tools, each with its own API "
                "style, and some of them stream their answers as server-sent events. "
            )
            * 4
            + "Which parts of this path would you measure first, and why?",
        },
    ],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ref",
        help="benchmark this git revision (exported to a temporary folder) "
        "instead of the working tree",
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds over all configurations"
    )
    parser.add_argument(
        "--duration", type=float, default=4.0, help="seconds per wrk run"
    )
    parser.add_argument(
        "--sse-streams",
        type=int,
        default=10,
        help="serial SSE streams per configuration and round",
    )
    parser.add_argument(
        "--slow-steps",
        default="2000,10000",
        help="slow streams to hold open: comma-separated running totals",
    )
    parser.add_argument(
        "--slow-hold",
        type=float,
        default=8.0,
        help="seconds each slow-stream step is held",
    )
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=8.0,
        help="seconds of py-spy sampling per profile",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated configurations to leave out, "
        "e.g. litellm-x2 or slow or profile",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="render docs from bench/results/latest.json",
    )
    return parser.parse_args()


def prepare_source(ref: str | None, folder: Path) -> dict[str, str]:
    """Put the lynkr-extproc source under test first on the import path."""
    commit = _git("rev-parse", ref or "HEAD")
    if ref is None:
        source = ROOT
        dirty = bool(_git("status", "--porcelain", "--", "lynkr_extproc"))
        described = f"working tree at {commit[:12]}" + (
            " with uncommitted changes" if dirty else ""
        )
    else:
        source = folder / "source"
        source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "lynkr_extproc"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        described = f"commit {commit[:12]} ({ref})"
    sys.path.insert(0, str(source))
    os.environ["PYTHONPATH"] = str(source)
    return {"commit": commit, "source": described}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- preflight and environment ---------------------------------------------------


def preflight(skip: set[str]) -> None:
    """Fail early, naming the missing tool or service and how to get it."""
    import stacks

    problems = []
    if (
        subprocess.run(["which", "wrk"], capture_output=True, check=False).returncode
        != 0
    ):
        problems.append("wrk is not installed: apt-get install -y wrk")
    if not ({"litellm", "litellm-x2"} <= skip) and not stacks.LITELLM_BIN.exists():
        problems.append(
            f"{stacks.LITELLM_BIN} is missing: run bench/run.sh, which creates LiteLLM's venv"
        )
    if (
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        != "PONG"
    ):
        problems.append("Redis does not reply to PING on 127.0.0.1:6379")
    if (
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-Atc",
                "SELECT 1",
            ],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ):
        problems.append(
            "PostgreSQL is not reachable on 127.0.0.1:5432 (database test, user postgres)"
        )
    if problems:
        raise SystemExit("bench/run.py: cannot start:\n  " + "\n  ".join(problems))


def environment(source: dict[str, str]) -> dict[str, Any]:
    import grpc
    import stacks
    from google import protobuf

    def output(command: list[str]) -> str:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable ({exc})"
        return (done.stdout + done.stderr).strip()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    redis_info = output(["redis-cli", "-h", "127.0.0.1", "INFO", "server"])
    redis_version = next(
        (
            l.split(":")[1]
            for l in redis_info.splitlines()
            if l.startswith("redis_version:")
        ),
        "?",
    )
    litellm_python = stacks.LITELLM_BIN.parent / "python"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "machine": f"{os.cpu_count()} cores ({cpu}), {memory_kib / 2**20:.0f} GiB RAM, "
        f"Linux {platform.release()}",
        "lynkr": source["source"],
        "commit": source["commit"],
        "python": platform.python_version(),
        "envoy": _envoy_version(
            output([str(Path(sys.executable).parent / "envoy"), "--version"])
        ),
        "grpcio": grpc.__version__,
        "protobuf": protobuf.__version__,
        "litellm": output(
            [
                str(litellm_python),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ]
        ),
        "redis": redis_version,
        "postgresql": output(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-Atc",
                "SHOW server_version",
            ]
        ).split()[0],
        "wrk": output(["wrk", "-v"]).splitlines()[0].split()[1],
    }


def _envoy_version(text: str) -> str:
    """Return "1.40.0" from `envoy --version`, which prints `version: SHA/1.40.0/Clean/...`."""
    match = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", text)
    return match.group(1) if match else text


# -- the configurations ----------------------------------------------------------


def start_stacks(
    upstream_port: int, folder: Path, token: str, skip: set[str]
) -> list[Any]:
    import stacks

    plans = [
        ("alone", lambda: stacks.build_envoy_alone(upstream_port, folder)),
        ("floor", lambda: stacks.build_echo_floor(upstream_port, folder)),
        ("floor-observe", lambda: stacks.build_echo_observe(upstream_port, folder)),
        (
            "lynkr-sqlite",
            lambda: stacks.build_lynkr(
                "lynkr-sqlite",
                "lynkr, SQLite",
                "sqlite",
                1,
                upstream_port,
                folder,
                token,
            ),
        ),
        (
            "lynkr-sqlite-asyncio",
            lambda: stacks.build_lynkr(
                "lynkr-sqlite-asyncio",
                "lynkr, SQLite, asyncio event loop",
                "sqlite",
                1,
                upstream_port,
                folder,
                token + "a",
                event_loop="asyncio",
            ),
        ),
        (
            "lynkr-redis",
            lambda: stacks.build_lynkr(
                "lynkr-redis", "lynkr, Redis", "redis", 1, upstream_port, folder, token
            ),
        ),
        (
            "lynkr-redis-pg",
            lambda: stacks.build_lynkr(
                "lynkr-redis-pg",
                "lynkr, Redis + PostgreSQL",
                "redis+postgresql",
                1,
                upstream_port,
                folder,
                token,
            ),
        ),
        (
            "lynkr-sqlite-x2",
            lambda: stacks.build_lynkr(
                "lynkr-sqlite-x2",
                "lynkr, SQLite, 2 processes",
                "sqlite",
                2,
                upstream_port,
                folder,
                token + "s2",
            ),
        ),
        *[
            (
                f"lynkr-sqlite-x{n}",
                lambda n=n: stacks.build_lynkr(
                    f"lynkr-sqlite-x{n}",
                    f"lynkr, SQLite, {n} processes",
                    "sqlite",
                    n,
                    upstream_port,
                    folder,
                    token + f"s{n}",
                ),
            )
            for n in (3, 4)
        ],
        (
            "lynkr-redis-x2",
            lambda: stacks.build_lynkr(
                "lynkr-redis-x2",
                "lynkr, Redis, 2 processes",
                "redis",
                2,
                upstream_port,
                folder,
                token + "r2",
            ),
        ),
        ("litellm", lambda: stacks.build_litellm(upstream_port, folder, workers=1)),
        ("litellm-x2", lambda: stacks.build_litellm(upstream_port, folder, workers=2)),
    ]
    started = []
    for name, build in plans:
        if name in skip:
            continue
        log(f"starting {name}")
        started.append(build())
    return started


def smoke_check(stack: Any, body: bytes, stream_body: bytes) -> None:
    """Send one JSON request and one stream, and raise unless both succeed."""
    import urllib.request

    import load

    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.port}{PATH}",
        data=body,
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {stack.auth}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        document = json.loads(response.read())
        if response.status != 200 or "usage" not in document:
            raise RuntimeError(
                f"{stack.name}: unexpected response {response.status} {document}"
            )
        if stack.name.startswith("lynkr") and not response.headers.get("x-lynkr-tier"):
            raise RuntimeError(f"{stack.name}: response has no x-lynkr-tier header")
        stack.info["smoke_headers"] = {
            k: v for k, v in response.headers.items() if k.startswith("x-lynkr")
        }
    streams = load.run_streams(
        stack.port, PATH, stream_body, stack.auth, count=1, concurrency=1
    )
    if streams.failed or len(streams.delays_us) != SSE_EVENTS:
        raise RuntimeError(f"{stack.name}: stream check failed: {streams}")
    stack.info["completed"] = 2


STORE_THREAD = "lynkr-sqlite"
"""Name prefix of lynkr-extproc's SQLite threads (store and ledger)."""


def meter_for(stack: Any, upstream_pid: int) -> Any:
    import load

    return load.ProcessMeter({**stack.measured(), "upstream": [upstream_pid]})


def json_run(
    stack: Any, meter: Any, body: bytes, connections: int, duration_s: float
) -> dict[str, Any]:
    import load

    before = meter.cpu()
    store_before = meter.thread_cpu("ext_proc", STORE_THREAD)
    busy_before, client_before = (
        load.machine_busy_seconds(),
        load.children_cpu_seconds(),
    )
    result = load.run_wrk(
        stack.port,
        PATH,
        body,
        stack.auth,
        connections=connections,
        duration_s=duration_s,
    )
    after = meter.cpu()
    store_thread = meter.thread_cpu("ext_proc", STORE_THREAD) - store_before
    busy = load.machine_busy_seconds() - busy_before
    client = load.children_cpu_seconds() - client_before
    cpu = {role: after[role] - before[role] for role in after}
    return {
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "cpu_s": cpu,
        # The part of the ext_proc's CPU spent on its SQLite store thread.
        "store_thread_cpu_s": store_thread,
        "client_cpu_s": client,
        # CPU time of everything else on the machine during the run.
        "other_cpu_s": busy - client - sum(cpu.values()),
        "rss_kib": meter.rss(),
    }


def stream_run(stack: Any, body: bytes, count: int, concurrency: int) -> dict[str, Any]:
    import load

    result = load.run_streams(
        stack.port, PATH, body, stack.auth, count=count, concurrency=concurrency
    )
    return {
        "delays_us": [round(d, 1) for d in result.delays_us],
        "failed": result.failed,
    }


def run_rounds(
    started: list[Any],
    upstream_pid: int,
    args: argparse.Namespace,
    body: bytes,
    stream_body: bytes,
) -> dict[str, Any]:
    """Run every configuration once per round, rotating the order each round."""
    measurements: dict[str, Any] = {
        stack.name: {
            "json": {str(c): [] for c in CONNECTIONS},
            "sse": {"1": [], str(SSE_CONCURRENT): []},
        }
        for stack in started
    }
    meters = {stack.name: meter_for(stack, upstream_pid) for stack in started}
    for round_index in range(args.rounds):
        shift = round_index % len(started)
        order = started[shift:] + started[:shift]
        for stack in order:
            log(f"round {round_index + 1}/{args.rounds}: {stack.name}")
            entry = measurements[stack.name]
            for connections in CONNECTIONS:
                run = json_run(
                    stack, meters[stack.name], body, connections, args.duration
                )
                entry["json"][str(connections)].append(run)
                stack.info["completed"] += run["requests"]
            for count, concurrency in (
                (args.sse_streams, 1),
                (SSE_CONCURRENT, SSE_CONCURRENT),
            ):
                run = stream_run(stack, stream_body, count, concurrency)
                entry["sse"][str(concurrency)].append(run)
                stack.info["completed"] += count - run["failed"]
    return measurements


def profile_lynkr(
    started: list[Any], args: argparse.Namespace, body: bytes, folder: Path
) -> dict[str, Any]:
    """Sample each single-process lynkr configuration under 32 connections.

    Each gets two py-spy runs (see pyspy_profile.MODES): Python CPU, and
    wall time per thread.
    """
    import load
    import pyspy_profile

    profiles: dict[str, Any] = {}
    for stack in started:
        if stack.name not in ("lynkr-sqlite", "lynkr-redis"):
            continue
        pid = stack.measured()["ext_proc"][0]
        for mode in pyspy_profile.MODES:
            output = folder / f"{stack.name}.{mode}.pyspy.txt"
            log(
                f"profiling {stack.name} (pid {pid}), {mode}, {args.profile_seconds:g}s"
            )
            sampler = pyspy_profile.start(pid, args.profile_seconds, output, mode)
            time.sleep(0.5)
            result = load.run_wrk(
                stack.port, PATH, body, stack.auth, connections=32,
                duration_s=args.profile_seconds - 1,
            )  # fmt: skip
            _, errors = sampler.communicate(timeout=args.profile_seconds + 60)
            stack.info["completed"] += result.requests
            key = f"{stack.name}/{mode}"
            if sampler.returncode != 0 or not output.exists():
                profiles[key] = {"error": errors.decode(errors="replace")[-500:]}
                continue
            summary = pyspy_profile.summarise(output)
            summary["rps_while_sampled"] = result.rps
            profiles[key] = summary
    return profiles


# -- spend check and cleanup -----------------------------------------------------------


def count_spend_records(stack: Any) -> int | None:
    """Return the spend records a stopped lynkr stack wrote, or None if unknown."""
    import sqlite3

    server = stack.info["document"]["server"]
    ledger = server.get("ledger", server["store"])
    if ledger.startswith("sqlite:///"):
        rows = 0
        with sqlite3.connect(ledger[len("sqlite:///") :]) as db:
            rows += db.execute("SELECT count(*) FROM spend_log").fetchone()[0]
        outbox = server.get("outbox")
        if outbox:
            with sqlite3.connect(outbox[len("sqlite:///") :]) as db:
                rows += db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return rows
    schema = ledger.rsplit("schema=", 1)[1]
    output = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-Atc",
            f'SELECT count(*) FROM "{schema}".lynkr_spend_log',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(output.stdout) if output.returncode == 0 else None


def clean_shared_state(tokens: list[str]) -> None:
    """Delete the Redis keys and PostgreSQL schemas the run created."""
    import redis
    import stacks

    client = redis.Redis.from_url(stacks.REDIS_URL)
    for token in tokens:
        keys = list(
            client.scan_iter(match=f"{stacks.redis_prefix(token)}:*", count=1000)
        )
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    client.close()
    for token in tokens:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-qAtc",
                f'DROP SCHEMA IF EXISTS "{stacks.postgres_schema(token)}" CASCADE',
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )


# -- LiteLLM's budget without a database ----------------------------------------------


def litellm_budget_probe(
    upstream_port: int, folder: Path, body: bytes
) -> dict[str, Any]:
    """Check whether LiteLLM enforces litellm_settings.max_budget without a database.

    The budget is below the cost of three requests; six are sent.
    """
    import urllib.error
    import urllib.request

    import stacks

    config = stacks.litellm_config(upstream_port)
    config["litellm_settings"] = {"max_budget": 0.0001, "budget_duration": "30d"}
    child, port = stacks.start_litellm(config, folder, "litellm-budget-probe")
    statuses, costs = [], []
    try:
        for _ in range(6):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{PATH}",
                data=body,
                headers={
                    "content-type": "application/json",
                    "authorization": f"Bearer {stacks.LITELLM_MASTER_KEY}",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    statuses.append(response.status)
                    costs.append(response.headers.get("x-litellm-response-cost"))
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
    finally:
        child.stop()
    return {
        "max_budget_usd": 0.0001,
        "statuses": statuses,
        "cost_per_request_usd": costs[0] if costs else None,
    }


# -- slow streams ------------------------------------------------------------------------


def slow_stream_test(
    folder: Path, args: argparse.Namespace, body: bytes, stream_body: bytes
) -> dict[str, Any]:
    """Hold many slow streams open through Envoy to one lynkr process and read its RSS.

    Then probe the generated bootstrap's circuit breakers with a second
    Envoy and lynkr process on the same slow upstream.
    """
    import stacks

    upstream, upstream_port = stacks.start_upstream(
        folder, "slow.upstream", events=SLOW_EVENTS, gap_ms=SLOW_GAP_MS
    )
    try:
        result = _hold_slow_streams(
            folder, args, body, stream_body, upstream, upstream_port
        )
        # The serve process has drained and exited: every admitted stream's
        # record must be in the file by now.
        result["records_added"] = (
            _spend_rows(folder / "slow-store.db") - result["records_before"]
        )
        result["default_breakers"] = default_breakers_probe(
            folder, upstream_port, stream_body
        )
        return result
    finally:
        upstream.stop(timeout_s=10)


def _hold_slow_streams(
    folder: Path,
    args: argparse.Namespace,
    body: bytes,
    stream_body: bytes,
    upstream: Any,
    upstream_port: int,
) -> dict[str, Any]:
    import load
    import slow_streams
    import stacks

    steps = [int(s) for s in args.slow_steps.split(",") if s]
    document = stacks.lynkr_document(
        {"store": f"sqlite:///{folder / 'slow-store.db'}"}, upstream_port
    )
    children = []
    try:
        lynkr = stacks.start_lynkr(document, folder, "slow.ext_proc")
        children.append(lynkr)
        bootstrap = stacks.raise_circuit_breakers(
            stacks.lynkr_bootstrap(document), 100_000
        )
        envoy, port = stacks.start_envoy(bootstrap, folder, "slow.envoy")
        children.append(envoy)
        admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
        load.run_wrk(port, PATH, body, stacks.KEY_SECRET, connections=8, duration_s=2)
        time.sleep(2)
        result: dict[str, Any] = {
            "before_kib": load.rss_kib(lynkr.pid),
            "steps": [],
            "records_before": _spend_rows(folder / "slow-store.db"),
        }
        log(f"slow streams: ext_proc RSS before {result['before_kib']} KiB")

        async def hold() -> None:
            holder = slow_streams.StreamHolder(
                port, PATH, stream_body, stacks.KEY_SECRET
            )
            try:
                for total in steps:
                    took = await holder.grow_to(total, deadline_s=240)
                    await asyncio.sleep(2)
                    samples = []
                    for _ in range(int(args.slow_hold)):
                        samples.append(load.rss_kib(lynkr.pid))
                        await asyncio.sleep(1)
                    step = {
                        "target": total,
                        "open": holder.open_count(),
                        "failed": holder.failed,
                        "ended_early": holder.ended_count(),
                        "open_seconds": round(took, 1),
                        "ext_proc_kib": max(samples),
                        "envoy_kib": load.rss_kib(envoy.pid),
                        "upstream_kib": load.rss_kib(upstream.pid),
                        "ext_proc_stats": _ext_proc_stats(admin_port),
                    }
                    result["steps"].append(step)
                    log(f"slow streams: {step}")
            finally:
                await holder.close()

        asyncio.run(hold())
        time.sleep(3)
        result["after_close_kib"] = load.rss_kib(lynkr.pid)
        return result
    finally:
        for child in reversed(children):
            child.stop(timeout_s=10)


def _spend_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM spend_log").fetchone()[0]


def default_breakers_probe(
    folder: Path, upstream_port: int, stream_body: bytes
) -> dict[str, Any]:
    """Open 1,100 slow streams through the generated bootstrap, unchanged.

    Return how the streams ended and Envoy's overflow counters. The
    bootstrap sets no circuit breakers, so Envoy's default of 1,024 active
    requests and connections per cluster applies.
    """
    import slow_streams
    import stacks

    document = stacks.lynkr_document(
        {"store": f"sqlite:///{folder / 'breakers-store.db'}"}, upstream_port
    )
    lynkr = stacks.start_lynkr(document, folder, "breakers.ext_proc")
    children = [lynkr]
    try:
        bootstrap = stacks.lynkr_bootstrap(document)
        envoy, port = stacks.start_envoy(bootstrap, folder, "breakers.envoy")
        children.append(envoy)
        admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]

        async def probe() -> dict[str, Any]:
            holder = slow_streams.StreamHolder(
                port, PATH, stream_body, stacks.KEY_SECRET
            )
            try:
                await holder.grow_to(1000, deadline_s=120)
                await holder.grow_to(1100, deadline_s=15)
                outcomes: dict[str, int] = {}
                for client in holder.clients:
                    for stream in client.streams.values():
                        key = (
                            "no response yet"
                            if stream.status == 0
                            else f"status {stream.status}"
                        )
                        outcomes[key] = outcomes.get(key, 0) + 1
                return {
                    "requested": 1100,
                    "outcomes": outcomes,
                    "stats": _overflow_stats(admin_port),
                }
            finally:
                await holder.close()

        log("probing the generated bootstrap's default circuit breakers")
        return asyncio.run(probe())
    finally:
        for child in reversed(children):
            child.stop(timeout_s=10)


def _envoy_stats(admin_port: int) -> dict[str, int]:
    import urllib.request

    url = f"http://127.0.0.1:{admin_port}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    stats = {}
    for line in lines:
        name, _, value = line.partition(": ")
        if value.isdigit():
            stats[name] = int(value)
    return stats


def _ext_proc_stats(admin_port: int) -> dict[str, int]:
    """Return Envoy's ext_proc filter counters that are not zero."""
    return {
        name.rpartition(".")[2]: value
        for name, value in _envoy_stats(admin_port).items()
        if ".ext_proc." in name and value
    }


def _overflow_stats(admin_port: int) -> dict[str, int]:
    counters = (
        "upstream_rq_active_overflow", "upstream_rq_pending_active",
        "upstream_rq_pending_overflow", "upstream_cx_active", "upstream_rq_active",
    )  # fmt: skip
    return {
        name: value
        for name, value in _envoy_stats(admin_port).items()
        if name.startswith("cluster.") and name.endswith(counters)
    }


LOG_IDS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(\.\d+)?"
)


def scan_logs(folder: Path) -> dict[str, Any]:
    """Count the WARNING and ERROR lines of each lynkr log, grouped by message.

    Request ids and numbers are replaced by `N` to group repeats of one
    message; each group keeps one line as it was logged.
    """
    problems: dict[str, Any] = {}
    for path in sorted(folder.glob("*ext_proc*.log")):
        groups: dict[str, dict[str, Any]] = {}
        with path.open(errors="replace") as lines:
            for line in lines:
                if " ERROR " not in line and " WARNING " not in line:
                    continue
                # Drop the date and time, then group by the message's shape.
                message = line.split(" ", 2)[-1].strip()
                shape = LOG_IDS.sub("N", message)
                group = groups.setdefault(shape, {"count": 0, "example": message[:300]})
                group["count"] += 1
        if groups:
            ordered = sorted(groups.values(), key=lambda g: -g["count"])
            problems[path.stem] = ordered[:5]
    return problems


# -- main ------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    if args.report_only:
        import report

        report.render(
            json.loads(RESULTS.read_text()),
            DOCS / "benchmarks.md",
            DOCS / "benchmarks.png",
        )
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started_at = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="lynkr-run-bench-"))
    source = prepare_source(args.ref, folder)
    import report
    import stacks

    preflight(skip)
    results: dict[str, Any] = {
        "environment": environment(source),
        "command": os.environ.get("BENCH_COMMAND") or shlex.join(["python", *sys.argv]),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "connections": list(CONNECTIONS),
            "sse_events": SSE_EVENTS,
            "sse_gap_ms": SSE_GAP_MS,
            "sse_streams": args.sse_streams,
            "sse_concurrent": SSE_CONCURRENT,
            "envoy_workers": stacks.ENVOY_WORKERS,
            "slow_gap_ms": SLOW_GAP_MS,
        },
    }
    body = json.dumps(REQUEST).encode()
    stream_body = json.dumps({**REQUEST, "stream": True}).encode()
    results["settings"]["request_bytes"] = len(body)
    token = uuid.uuid4().hex[:10]
    tokens = [token, token + "s2", token + "r2"]
    upstream, upstream_port = stacks.start_upstream(
        folder, "upstream", events=SSE_EVENTS, gap_ms=SSE_GAP_MS
    )
    started: list[Any] = []
    try:
        started = start_stacks(upstream_port, folder, token, skip)
        for stack in started:
            smoke_check(stack, body, stream_body)
        log("warming up")
        for stack in started:
            import load

            warm = load.run_wrk(
                stack.port, PATH, body, stack.auth, connections=32, duration_s=2
            )
            stack.info["completed"] += warm.requests
            if stack.info.get("store") == "redis+postgresql":
                stack.shared_pids["postgres"] = stacks.postgres_backends(
                    stack.measured()["ext_proc"]
                )
        results["configurations"] = {
            stack.name: {
                "label": stack.label,
                "roles": {r: len(p) for r, p in stack.measured().items()},
                "headers": stack.info.get("smoke_headers", {}),
            }
            for stack in started
        }
        results["measurements"] = run_rounds(
            started, upstream.pid, args, body, stream_body
        )
        if "profile" not in skip:
            results["profiles"] = profile_lynkr(started, args, body, folder)
    finally:
        for stack in started:
            stack.stop()
        upstream.stop()
    results["spend_records"] = {
        stack.name: {
            "records": count_spend_records(stack),
            "completed": stack.info["completed"],
        }
        for stack in started
        if "document" in stack.info
    }
    clean_shared_state(tokens)
    upstream, upstream_port = stacks.start_upstream(
        folder, "probe.upstream", events=SSE_EVENTS, gap_ms=SSE_GAP_MS
    )
    try:
        if "litellm" not in skip:
            log("probing LiteLLM's max_budget without a database")
            results["litellm_budget_probe"] = litellm_budget_probe(
                upstream_port, folder, body
            )
    finally:
        upstream.stop()
    if "slow" not in skip:
        try:
            results["slow_streams"] = slow_stream_test(folder, args, body, stream_body)
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the docs, and the other results are kept
            log(f"slow-stream test failed: {exc!r}")
            results["slow_streams"] = {"error": repr(exc)}
    results["log_problems"] = scan_logs(folder)
    results["elapsed_s"] = round(time.monotonic() - started_at)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    report.render(results, DOCS / "benchmarks.md", DOCS / "benchmarks.png")
    shutil.rmtree(folder, ignore_errors=True)
    log(f"done in {results['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
