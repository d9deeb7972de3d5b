"""lynkr-extproc `serve` processes for multi-replica and fault tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

CLI = str(Path(sys.executable).parent / "lynkr-extproc")


class ServeProcess:
    """One `lynkr-extproc serve` process for a config document."""

    def __init__(self, document: dict[str, Any], folder: Path, name: str) -> None:
        self.document = document
        self.address = document["server"]["listen"]
        self.config_path = folder / f"{name}.yaml"
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> "ServeProcess":
        self.config_path.write_text(yaml.safe_dump(self.document))
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [CLI, "serve", "--config", str(self.config_path), "--grace", "20"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_serving(timeout_s)
        return self

    def wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"serve exited {self.process.returncode}: {self.log()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise TimeoutError(f"serve not healthy after {timeout_s}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout_s: float = 30.0) -> int:
        """Send SIGTERM and return the exit status."""
        return self._stop(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        return self._stop(signal.SIGKILL, 10.0)

    def _stop(self, signum: int, timeout_s: float) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._log.close()
        return status
