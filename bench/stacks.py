"""Start and stop the processes of each benchmark configuration.

A `Stack` is one way of putting a proxy in front of the fast upstream
(Envoy alone, Envoy + echo ext_proc, Envoy + lynkr-extproc, LiteLLM),
with the ids of the processes whose CPU time and RSS the run reports.
Every process listens on 127.0.0.1 only, on a port picked free at start.
"""

from __future__ import annotations

import copy
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lynkr_extproc import envoy_config
from lynkr_extproc.cli import find_envoy
from lynkr_extproc.config import parse_config

BENCH = Path(__file__).resolve().parent
LITELLM_BIN = BENCH / ".venv-litellm" / "bin" / "litellm"

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

KEY_SECRET = "sk-lynkr-bench-key"
LITELLM_MASTER_KEY = "sk-litellm-bench-master"
MODEL = "gpt-4o-mini"
BUDGET_USD = 1_000_000
"""Window limit of every bench budget: never reached, so every request runs
the whole admission path and none is rejected."""

ENVOY_WORKERS = 2
STARTUP_TIMEOUT_S = 60.0


def child_env(**extra: str) -> dict[str, str]:
    """Return this environment for a benchmarked child process.

    PYTHONDONTWRITEBYTECODE is removed so that Python children load
    cached bytecode the way a deployed service does. PYTHONPATH, which
    `run.py` points at the lynkr-extproc source under test, is kept.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    """One started process, its log file and the role it plays."""

    name: str
    role: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(
    name: str,
    role: str,
    command: list[str],
    folder: Path,
    env: dict[str, str] | None = None,
) -> Child:
    """Start `command` with its output in FOLDER/NAME.log."""
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
            cwd=folder,
        )
    return Child(name, role, process, log_path)


def wait_for_log(child: Child, text: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in child.log_path.read_text(errors="replace"):
            return
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited {child.process.returncode}: {child.log_tail()}"
            )
        time.sleep(0.05)
    raise TimeoutError(
        f"{child.name}: no {text!r} after {timeout_s}s: {child.log_tail()}"
    )


def wait_for_http(child: Child, url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited {child.process.returncode}: {child.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.1)
    raise TimeoutError(
        f"{child.name}: {url} not ready after {timeout_s}s: {child.log_tail()}"
    )


def wait_for_grpc_health(
    child: Child, address: str, timeout_s: float = STARTUP_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited {child.process.returncode}: {child.log_tail()}"
                )
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.05)
    raise TimeoutError(
        f"{child.name}: not SERVING after {timeout_s}s: {child.log_tail()}"
    )


# -- the fast upstream and the echo ext_proc ---------------------------------


def start_upstream(
    folder: Path, name: str, *, events: int, gap_ms: float
) -> tuple[Child, int]:
    port = free_port()
    child = spawn(
        name,
        "upstream",
        [
            sys.executable,
            str(BENCH / "fast_upstream.py"),
            "--port",
            str(port),
            "--events",
            str(events),
            "--gap-ms",
            str(gap_ms),
        ],
        folder,
    )
    wait_for_log(child, f"listening {port}")
    return child, port


def start_echo(folder: Path, name: str) -> tuple[Child, str]:
    address = f"127.0.0.1:{free_port()}"
    child = spawn(
        name,
        "ext_proc",
        [sys.executable, str(BENCH / "echo_extproc.py"), "--listen", address],
        folder,
    )
    wait_for_log(child, f"listening {address}")
    return child, address


# -- lynkr-extproc -------------------------------------------------------------


def lynkr_document(store: dict[str, str], upstream_port: int) -> dict[str, Any]:
    """Return a lynkr.yaml document for the full path against the fast upstream.

    One key with budgets on the key (day) and its team (month), four tiers
    on the one upstream and no aliases, so every request is scored, pinned
    to its session, reserved on two windows and recorded.
    """
    return {
        "server": {"listen": f"127.0.0.1:{free_port()}", "timezone": "UTC", **store},
        "envoy": {"listen": f"127.0.0.1:{free_port()}", "admin_port": free_port()},
        "upstreams": {
            "bench": {
                "provider": "openai",
                "url": f"http://127.0.0.1:{upstream_port}",
                "api_key": "sk-upstream-bench",
            },
        },
        "tiers": {
            "SIMPLE": {"upstream": "bench", "model": "gpt-4o-mini"},
            "MEDIUM": {"upstream": "bench", "model": "gpt-4.1-mini"},
            "COMPLEX": {"upstream": "bench", "model": "claude-sonnet-4-5"},
            "REASONING": {"upstream": "bench", "model": "o3"},
        },
        "keys": [
            {
                "id": "bench-key",
                "sha256": hashlib.sha256(KEY_SECRET.encode()).hexdigest(),
                "team": "bench-team",
                "org": "bench-org",
            }
        ],
        "budgets": {
            "virtual_key": {"bench-key": [{"period": "day", "limit_usd": BUDGET_USD}]},
            "team": {"bench-team": [{"period": "month", "limit_usd": BUDGET_USD}]},
        },
    }


def start_lynkr(document: dict[str, Any], folder: Path, name: str) -> Child:
    config_path = folder / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(document))
    child = spawn(
        name,
        "ext_proc",
        [
            sys.executable,
            "-m",
            "lynkr_extproc",
            "serve",
            "--config",
            str(config_path),
            "--grace",
            "5",
        ],
        folder,
    )
    wait_for_grpc_health(child, document["server"]["listen"])
    return child


# -- Envoy -------------------------------------------------------------------------


def lynkr_bootstrap(document: dict[str, Any]) -> dict[str, Any]:
    """Return the bootstrap `lynkr-extproc envoy-config` writes for the document."""
    return envoy_config.bootstrap(parse_config(copy.deepcopy(document)))


def direct_bootstrap(document: dict[str, Any], *, ext_proc: bool) -> dict[str, Any]:
    """Return lynkr's bootstrap with one route straight to the upstream.

    The listener, buffer limits, compressor filters and ext_proc settings
    stay as generated; without `ext_proc` the filter and its cluster are
    removed, which leaves Envoy alone.
    """
    bootstrap = lynkr_bootstrap(document)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"
    ][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    upstream_route = routes[0]
    upstream_route["match"] = {"prefix": "/"}
    upstream_route.pop("request_headers_to_remove", None)
    manager["route_config"]["virtual_hosts"][0]["routes"] = [upstream_route]
    if not ext_proc:
        manager["http_filters"] = [
            f
            for f in manager["http_filters"]
            if f["name"] != "envoy.filters.http.ext_proc"
        ]
        clusters = bootstrap["static_resources"]["clusters"]
        bootstrap["static_resources"]["clusters"] = [
            c for c in clusters if c["name"] != envoy_config.EXT_PROC_CLUSTER
        ]
    return bootstrap


def observe_bootstrap(document: dict[str, Any]) -> dict[str, Any]:
    """Return the floor's bootstrap with the response read by an observer.

    The ext_proc filter in the request path keeps the request phases
    (headers, buffered body) and skips the response. A second ext_proc
    filter on the same cluster, in `observability_mode`, is sent the
    response headers and the streamed response body, and Envoy does not
    wait for its replies. This is how usage could be read without holding
    the response.
    """
    bootstrap = direct_bootstrap(document, ext_proc=True)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"
    ][0]["typed_config"]
    filters = manager["http_filters"]
    index = next(
        i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_proc"
    )
    in_path = filters[index]["typed_config"]
    in_path["processing_mode"].update(
        response_header_mode="SKIP", response_body_mode="NONE"
    )
    in_path["allow_mode_override"] = False
    observer = copy.deepcopy(in_path)
    observer["processing_mode"] = {
        "request_header_mode": "SKIP",
        "response_header_mode": "SEND",
        "request_body_mode": "NONE",
        "response_body_mode": "STREAMED",
        "request_trailer_mode": "SKIP",
        "response_trailer_mode": "SKIP",
    }
    observer["observability_mode"] = True
    # With failure_mode_allow, an observer's gRPC failure does not fail the client's request.
    observer["failure_mode_allow"] = True
    observer.pop("status_on_error", None)
    # Later in the list, so Envoy passes it the response before the other filters.
    filters.insert(index + 1, {"name": "lynkr.usage_observer", "typed_config": observer})
    return bootstrap


def raise_circuit_breakers(bootstrap: dict[str, Any], limit: int) -> dict[str, Any]:
    """Set every cluster's connection and request limits to `limit`.

    Envoy's default thresholds (1,024 connections, pending and active
    requests per cluster) fail any request beyond 1,024 in flight.
    """
    for cluster in bootstrap["static_resources"]["clusters"]:
        cluster["circuit_breakers"] = {
            "thresholds": [
                {
                    "max_connections": limit,
                    "max_pending_requests": limit,
                    "max_requests": limit,
                }
            ]
        }
    return bootstrap


def start_envoy(
    bootstrap: dict[str, Any], folder: Path, name: str
) -> tuple[Child, int]:
    config_path = folder / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(bootstrap))
    admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    child = spawn(
        name,
        "envoy",
        [
            find_envoy(),
            "-c",
            str(config_path),
            "--log-level",
            "warning",
            "--base-id",
            str(admin_port),
            "--concurrency",
            str(ENVOY_WORKERS),
        ],
        folder,
    )
    wait_for_http(child, f"http://127.0.0.1:{admin_port}/ready")
    listener = bootstrap["static_resources"]["listeners"][0]["address"][
        "socket_address"
    ]
    return child, listener["port_value"]


# -- LiteLLM -----------------------------------------------------------------------


LITELLM_OFFLINE_ENV = {
    # Each of these makes LiteLLM read its bundled copy instead of fetching
    # the file from GitHub or its docs site at start.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    # Errors only, so that logging adds as little as possible per request.
    "LITELLM_LOG": "ERROR",
}


def litellm_config(upstream_port: int) -> dict[str, Any]:
    """Return a LiteLLM proxy config with one model on the fast upstream."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "sk-upstream-bench",
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }


def start_litellm(
    config: dict[str, Any], folder: Path, name: str, *, workers: int = 1
) -> tuple[Child, int]:
    config_path = folder / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    child = spawn(
        name,
        "litellm",
        [
            str(LITELLM_BIN),
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        folder,
        env={
            k: v
            for k, v in child_env(**LITELLM_OFFLINE_ENV).items()
            if k != "PYTHONPATH"
        },
    )
    wait_for_http(child, f"http://127.0.0.1:{port}/health/liveliness", timeout_s=180)
    return child, port


# -- the stacks --------------------------------------------------------------------


@dataclass
class Stack:
    """One benchmarked configuration: where to send requests, what to measure."""

    name: str
    label: str
    port: int
    auth: str
    children: list[Child] = field(default_factory=list)
    shared_pids: dict[str, list[int]] = field(default_factory=dict)
    """Processes this stack uses but did not start (Redis, PostgreSQL)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Facts the run collects about this stack: store, config document, counts."""

    def measured(self) -> dict[str, list[int]]:
        """Return role -> process ids whose CPU time and RSS are reported."""
        roles: dict[str, list[int]] = {}
        for child in self.children:
            roles.setdefault(child.role, []).append(child.pid)
        roles.update(self.shared_pids)
        return roles

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


def system_pids(command_name: str, argument: str | None = None) -> list[int]:
    """Return the ids of processes named `command_name` whose command line contains `argument`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (
                (entry / "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if comm == command_name and (argument is None or argument in cmdline):
            pids.append(int(entry.name))
    return sorted(pids)


def build_envoy_alone(upstream_port: int, folder: Path) -> Stack:
    document = lynkr_document({}, upstream_port)
    envoy, port = start_envoy(
        direct_bootstrap(document, ext_proc=False), folder, "alone.envoy"
    )
    return Stack("alone", "Envoy alone", port, KEY_SECRET, [envoy])


def build_echo_floor(upstream_port: int, folder: Path) -> Stack:
    echo, address = start_echo(folder, "floor.ext_proc")
    document = lynkr_document({}, upstream_port)
    document["envoy"]["ext_proc_address"] = address
    envoy, port = start_envoy(
        direct_bootstrap(document, ext_proc=True), folder, "floor.envoy"
    )
    return Stack(
        "floor", "Envoy + echo ext_proc (floor)", port, KEY_SECRET, [echo, envoy]
    )


def build_echo_observe(upstream_port: int, folder: Path) -> Stack:
    echo, address = start_echo(folder, "floor-observe.ext_proc")
    document = lynkr_document({}, upstream_port)
    document["envoy"]["ext_proc_address"] = address
    envoy, port = start_envoy(
        observe_bootstrap(document), folder, "floor-observe.envoy"
    )
    return Stack(
        "floor-observe",
        "Envoy + echo ext_proc, response in observability_mode",
        port,
        KEY_SECRET,
        [echo, envoy],
    )


def store_settings(store: str, folder: Path, name: str, token: str) -> dict[str, str]:
    """Return server.store/ledger/outbox for "sqlite", "redis" or "redis+postgresql"."""
    if store == "sqlite":
        return {"store": f"sqlite:///{folder / name}-store.db"}
    settings = {
        "store": f"{REDIS_URL}?prefix={redis_prefix(token)}",
        "ledger": f"sqlite:///{folder / name}-ledger.db",
        "outbox": f"sqlite:///{folder / name}-outbox.db",
    }
    if store == "redis+postgresql":
        settings["ledger"] = f"{POSTGRES_URL}?schema={postgres_schema(token)}"
    return settings


def redis_prefix(token: str) -> str:
    return f"lynkr-bench-{token}"


def postgres_schema(token: str) -> str:
    return f"lynkr_bench_{token}"


def build_lynkr(
    name: str,
    label: str,
    store: str,
    replicas: int,
    upstream_port: int,
    folder: Path,
    token: str,
    *,
    event_loop: str = "uvloop",
) -> Stack:
    """Start `replicas` serve processes sharing one store, behind one Envoy."""
    document = lynkr_document(store_settings(store, folder, name, token), upstream_port)
    document["server"]["event_loop"] = event_loop
    children = []
    addresses = []
    for index in range(replicas):
        replica = copy.deepcopy(document)
        replica["server"]["listen"] = f"127.0.0.1:{free_port()}"
        children.append(start_lynkr(replica, folder, f"{name}.ext_proc{index}"))
        addresses.append(replica["server"]["listen"])
    document["envoy"]["ext_proc_address"] = addresses
    envoy, port = start_envoy(lynkr_bootstrap(document), folder, f"{name}.envoy")
    stack = Stack(name, label, port, KEY_SECRET, [*children, envoy])
    stack.info.update(store=store, replicas=replicas, document=document)
    if store != "sqlite":
        stack.shared_pids["redis"] = system_pids("redis-server", "127.0.0.1:6379")
    return stack


def build_litellm(upstream_port: int, folder: Path, *, workers: int) -> Stack:
    name = "litellm" if workers == 1 else f"litellm-x{workers}"
    child, port = start_litellm(
        litellm_config(upstream_port), folder, name, workers=workers
    )
    label = "LiteLLM proxy" + ("" if workers == 1 else f", {workers} workers")
    stack = Stack(name, label, port, LITELLM_MASTER_KEY, [child])
    stack.info.update(workers=workers)
    return stack


def postgres_backends(client_pids: list[int]) -> list[int]:
    """Return the PostgreSQL backend processes serving these client processes.

    A client's TCP connections to port 5432 are found from its socket
    descriptors and /proc/net/tcp, then matched to pg_stat_activity by
    client port.
    """
    inodes = set()
    for pid in client_pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == 5432:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    if not ports:
        return []
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
            "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    backends = []
    for line in output.splitlines():
        pid, _, port = line.partition("|")
        if int(port) in ports:
            backends.append(int(pid))
    return sorted(backends)
