"""Test session setup, and a scan of every log line for leaked credentials."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECRET_MARKERS = ("sk-test-", "provider-secret-", "sk-lynkr-demo")
"""Prefixes of every virtual key and provider key the tests use."""


class _LogScan(logging.Handler):
    """Keeps each formatted log line of the session that contains a secret."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # a broken log call is not this handler's concern
            return
        self.lines += 1
        if any(marker in line for marker in SECRET_MARKERS):
            self.leaks.append(f"{record.name}: {line}")


_SCAN = _LogScan()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_SCAN)
    if root.level > logging.DEBUG or root.level == logging.NOTSET:
        root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any log line of the suite carried a credential."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log scan: {_SCAN.lines} log lines, {len(_SCAN.leaks)} with a credential")
    if _SCAN.leaks:
        if reporter is not None:
            for leak in _SCAN.leaks[:20]:
                reporter.write_line(f"credential in log: {leak}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
