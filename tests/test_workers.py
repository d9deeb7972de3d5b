"""`serve --workers N`: several processes, one Envoy cluster spreading streams over them."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lynkr_extproc import envoy_config
from lynkr_extproc.config import load_config
from tests.support import cases
from tests.support.envoy import Envoy
from tests.support.processes import CLI
from tests.support.stack import Stack
from tests.support.upstream import ReplayUpstream, Reply


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_two_workers_share_the_traffic(tmp_path: Path):
    """Two workers listen on consecutive ports and Envoy spreads requests over both."""
    base = cases.free_port()
    while not all(_port_free(base + i) for i in range(2)):
        base = cases.free_port()
    with ReplayUpstream(Reply.json({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})) as upstream:
        document = cases.document(tmp_path / "store.db", openai_url=upstream.url)
        document["server"]["listen"] = f"127.0.0.1:{base}"
        document["server"]["workers"] = 2
        path = tmp_path / "lynkr.yaml"
        path.write_text(yaml.safe_dump(document))
        config = load_config(path)
        supervisor = subprocess.Popen([CLI, "serve", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            addresses = [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
            while not all(serving(a) for a in addresses) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert all(serving(a) for a in addresses)
            with Envoy(envoy_config.bootstrap(config)) as envoy:
                stack = Stack.__new__(Stack)
                stack.port = config.envoy.listen_port
                statuses = [
                    stack.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                               {"x-api-key": cases.secret("vk-a")}).status
                    for _ in range(20)
                ]
                with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/clusters", timeout=5) as reply:
                    lines = reply.read().decode().splitlines()
        finally:
            supervisor.send_signal(signal.SIGTERM)
            status = supervisor.wait(30)
    served = {
        line.split("::")[1]: int(line.split("::")[3])
        for line in lines
        if line.startswith("lynkr_extproc::") and "::rq_total::" in line
    }
    assert statuses == [200] * 20
    assert set(served) == set(addresses)
    assert all(count > 0 for count in served.values())
    assert status == 0
    assert not any(serving(a) for a in addresses)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
