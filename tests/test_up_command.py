"""Tests of the installed `lynkr-extproc` console script, run as a subprocess.

`up` runs Envoy and the ext_proc server together, so these tests also
check that it stops both on SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lynkr_extproc.cli import find_envoy
from tests.support.ports import free_port
from tests.support.stack import key_hash
from tests.support.upstream import FIXTURES, Received, Reply, ReplayUpstream

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-up"
READY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0

# gpt-5-nano at USD 0.05 input and 0.40 output per million tokens. The
# recorded completion reports 8 prompt and 377 completion tokens, 320 of
# them reasoning, which without a reasoning price cost the output price:
# 8 * 50 + 377 * 400 nano-dollars.
PRICE = {"input": 0.05, "output": 0.40}
RECORDED_COST_NANOS = 8 * 50 + 377 * 400


@pytest.fixture
def console_script() -> Path:
    script = Path(sys.executable).parent / "lynkr-extproc"
    if not script.is_file():
        pytest.fail(f"{script} not found; install the package with `pip install -e .`")
    return script


@pytest.fixture
def upstream() -> Iterator[ReplayUpstream]:
    def choose(received: Received) -> Reply:
        if received.method == "POST" and received.path == "/v1/chat/completions":
            return Reply.fixture("openai/chat_completion")
        return Reply.json({"object": "list", "data": []})

    with ReplayUpstream(choose) as running:
        yield running


def write_config(tmp_path: Path, upstream_url: str) -> Path:
    """Write a one-tier config on free ports and return its path."""
    document: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{free_port()}",
            "store": f"sqlite:///{tmp_path / 'lynkr.db'}",
        },
        "envoy": {"listen": f"127.0.0.1:{free_port()}", "admin_port": free_port()},
        "upstreams": {
            "replay": {
                "provider": "openai",
                "url": upstream_url,
                "api_key": "provider-secret",
            },
        },
        "tiers": {"SIMPLE": {"upstream": "replay", "model": "gpt-5-nano"}},
        "routing": {"bands": {"SIMPLE": 100}},
        "pricing": {"include_defaults": False, "models": {"gpt-5-nano": PRICE}},
        "keys": [
            {"id": "up-key", "sha256": key_hash(SECRET), "team": "t1", "org": "o1"}
        ],
    }
    path = tmp_path / "lynkr.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def wait_for_listener(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until Envoy's listener returns a response to any HTTP request."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"lynkr-extproc up exited with status {process.returncode}:\n"
                f"{log.read_text(errors='replace')}"
            )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            connection.close()
    raise TimeoutError(
        f"envoy listener on port {port} not answering after {READY_TIMEOUT_S:.0f}s:\n"
        f"{log.read_text(errors='replace')}"
    )


def child_pids(parent: int) -> list[int]:
    """Return the ids of the running processes whose parent is `parent`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after it.
        fields = text.rpartition(")")[2].split()
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def is_running(pid: int, name: str) -> bool:
    """Return True when process `pid` exists, is named `name` and is no zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    command = text[text.index("(") + 1 : text.rindex(")")]
    state = text.rpartition(")")[2].split()[0]
    return command == name and state != "Z"


def spend_rows(database: Path) -> list[dict[str, Any]]:
    """Return the spend rows, polling up to 10 s for the first one."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(database) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(row) for row in db.execute("SELECT * FROM spend_log")]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@dataclass
class UpProcess:
    """A running `lynkr-extproc up` and the Envoy it started."""

    process: subprocess.Popen[bytes]
    listen_port: int
    log: Path
    envoy_pid: int


@contextmanager
def run_up(
    console_script: Path, config_path: Path, temp_dir: Path
) -> Iterator[UpProcess]:
    """Start `up` with TMPDIR set to `temp_dir` and wait for Envoy's listener.

    On exit, kills `up` and its Envoy if they are still running.
    """
    config = yaml.safe_load(config_path.read_text())
    listen_port = int(config["envoy"]["listen"].rpartition(":")[2])
    log = config_path.parent / "up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(console_script), "up", "--config", str(config_path)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(temp_dir)},
        )
    envoy_pids: list[int] = []
    try:
        wait_for_listener(listen_port, process, log)
        envoy_pids = [
            pid for pid in child_pids(process.pid) if is_running(pid, "envoy")
        ]
        assert len(envoy_pids) == 1, f"envoy children of {process.pid}: {envoy_pids}"
        yield UpProcess(process, listen_port, log, envoy_pids[0])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in envoy_pids:
            if is_running(pid, "envoy"):
                os.kill(pid, signal.SIGKILL)


def stop(up: UpProcess) -> int:
    """Send SIGTERM to `up` and return its exit status."""
    up.process.send_signal(signal.SIGTERM)
    try:
        return up.process.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`up` still running {EXIT_TIMEOUT_S:.0f}s after SIGTERM")


@pytest.mark.e2e
def test_up_serves_and_stops_on_sigterm(
    console_script: Path, upstream: ReplayUpstream, tmp_path: Path
) -> None:
    """`up` routes a request, records its spend and exits 0 on SIGTERM."""
    config_path = write_config(tmp_path, upstream.url)
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    with run_up(console_script, config_path, temp_dir) as up:
        request = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello!"}],
        }
        connection = http.client.HTTPConnection("127.0.0.1", up.listen_port, timeout=30)
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(request),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {SECRET}",
            },
        )
        reply = connection.getresponse()
        body = reply.read()
        connection.close()

        assert reply.status == 200, body
        assert reply.getheader("x-lynkr-tier") == "SIMPLE"
        assert reply.getheader("x-lynkr-model") == "gpt-5-nano"
        assert reply.getheader("x-lynkr-routing-reason")
        recorded = FIXTURES / "openai" / "chat_completion.body"
        assert json.loads(body) == json.loads(recorded.read_bytes())

        assert len(upstream.received) == 1
        sent = upstream.received[0]
        assert sent.json()["model"] == "gpt-5-nano"
        assert sent.headers.get("authorization") == "Bearer provider-secret"

        rows = spend_rows(tmp_path / "lynkr.db")
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["key_id"] == "up-key"
        assert row["tier"] == "SIMPLE"
        assert row["upstream"] == "replay"
        assert row["model"] == "gpt-5-nano"
        assert row["usage_source"] == "reported"
        assert row["status"] == 200
        assert row["outcome"] == "completed"
        assert row["input_tokens"] == 8
        assert row["output_tokens"] == 377
        assert row["reasoning_tokens"] == 320
        assert row["cost_nanos"] == RECORDED_COST_NANOS

        status = stop(up)

        assert status == 0, up.log.read_text(errors="replace")
        assert not is_running(up.envoy_pid, "envoy"), "envoy outlived `up`"
        with pytest.raises(ConnectionRefusedError):
            http.client.HTTPConnection("127.0.0.1", up.listen_port, timeout=1).connect()


@pytest.mark.e2e
def test_up_removes_temp_dir_on_exit(
    console_script: Path, upstream: ReplayUpstream, tmp_path: Path
) -> None:
    """`up` deletes the directory of the Envoy bootstrap it wrote."""
    config_path = write_config(tmp_path, upstream.url)
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    with run_up(console_script, config_path, temp_dir) as up:
        written = sorted(path.name for path in temp_dir.iterdir())
        assert len(written) == 1, f"expected one bootstrap directory, found {written}"

        status = stop(up)

    assert status == 0, up.log.read_text(errors="replace")
    left = sorted(str(path) for path in temp_dir.rglob("*"))
    assert left == [], f"`up` left its temporary files behind: {left}"


def test_serve_rejects_undefined_upstream(
    console_script: Path, tmp_path: Path
) -> None:
    """A tier naming an undefined upstream exits 2 with a message that names both."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "upstreams": {
                    "local": {"provider": "llamacpp", "url": "http://127.0.0.1:9"},
                    "claude": {"provider": "anthropic", "url": "http://127.0.0.1:9"},
                },
                "tiers": {"SIMPLE": {"upstream": "lokal", "model": "gemma-3-270m"}},
            },
            sort_keys=False,
        )
    )

    result = subprocess.run(
        [str(console_script), "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "tiers.SIMPLE.upstream" in result.stderr
    assert "'lokal'" in result.stderr
    assert "defined: local, claude" in result.stderr
    assert "Traceback" not in result.stderr


def envoy_config_text(console_script: Path, *options: str) -> str:
    """Run `envoy-config` for the example lynkr.yaml and return its stdout."""
    result = subprocess.run(
        [str(console_script), "envoy-config", "--config", "lynkr.yaml", *options],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.e2e
def test_envoy_config_passes_envoy_validate(
    console_script: Path, tmp_path: Path
) -> None:
    """The bootstrap generated for the example config is valid for Envoy."""
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(envoy_config_text(console_script))

    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(bootstrap)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_config_output_file_matches_stdout(
    console_script: Path, tmp_path: Path
) -> None:
    """`envoy-config -o FILE` writes the same bootstrap it prints to stdout."""
    output = tmp_path / "envoy.yaml"

    printed = envoy_config_text(console_script, "--output", str(output))

    assert printed == ""
    assert output.read_text() == envoy_config_text(console_script)
