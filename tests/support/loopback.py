"""The Claude Code CLI and a loopback-only network namespace for client tests.

A client test calls `run_in_loopback_namespace` first. Outside the
namespace, that runs the same test again under `unshare -n`, where the
only interface is `lo`, and fails when the inner run does not pass.
Inside (NAMESPACE_VARIABLE is "1"), the test runs its body, so every
process it starts can reach 127.0.0.1 and nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLAUDE_BIN_VARIABLE = "LYNKR_CLAUDE_BIN"
NAMESPACE_VARIABLE = "LYNKR_TEST_IN_LOOPBACK_NAMESPACE"
"""Set to 1 for the copy of the test that runs inside the namespace."""


def find_claude() -> str:
    """Return the Claude Code executable, or skip the test without one."""
    configured = os.environ.get(CLAUDE_BIN_VARIABLE)
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(
                f"{CLAUDE_BIN_VARIABLE}={configured!r} is not an executable file; "
                f"set it to the path that tests/install_claude_code.sh DIR prints"
            )
        return os.path.abspath(configured)
    found = shutil.which("claude")
    if found is None:
        pytest.skip(
            f"Claude Code CLI not found: set {CLAUDE_BIN_VARIABLE} or put claude "
            f"on PATH (tests/install_claude_code.sh DIR installs it)"
        )
    return found


def in_loopback_namespace() -> bool:
    return os.environ.get(NAMESPACE_VARIABLE) == "1"


def run_in_loopback_namespace(
    request: pytest.FixtureRequest, claude: str, tmp_path: Path, timeout_s: float
) -> None:
    """Run the current test again in a new network namespace with only lo, up.

    Skips when unshare or ip is missing or the namespace cannot be created
    (that needs root or CAP_SYS_ADMIN). Fails when the inner run fails or
    takes longer than `timeout_s` seconds.
    """
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            pytest.skip(
                f"{tool} not found: install {package}, which the test needs "
                f"for a loopback-only network namespace"
            )
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"cannot create a network namespace (needs root or CAP_SYS_ADMIN): "
            f"unshare -n failed: {probe.stderr.strip()}"
        )

    command = [
        "unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
        sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider",
        f"--basetemp={tmp_path / 'namespace'}", request.node.nodeid,
    ]  # fmt: skip
    env = {**os.environ, NAMESPACE_VARIABLE: "1", CLAUDE_BIN_VARIABLE: claude}
    result = run_bounded(command, timeout_s, cwd=request.config.rootpath, env=env)
    if result.returncode != 0 or "1 passed" not in result.stdout:
        pytest.fail(f"failed in the namespace, {describe(result)}", pytrace=False)


def run_bounded(
    command: list[str], timeout_s: float, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run `command` in its own process group and kill the group on timeout."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **options,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        result = subprocess.CompletedProcess(command, -signal.SIGKILL, stdout, stderr)
        pytest.fail(f"{command[0]} timed out after {timeout_s} s:\n{describe(result)}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Format a finished process's exit status and the ends of its output."""
    return (
        f"exit status {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
