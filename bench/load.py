"""Load generators and process meters of the benchmark.

- `run_wrk`: JSON requests with Debian's wrk, one thread, a fixed number of
  keep-alive connections for a fixed time.
- `run_streams`: a bounded asyncio client that opens SSE streams and
  timestamps every event on arrival. The upstream writes its send time into
  each event, so the difference is the event's delivery delay.
- `ProcessMeter`: CPU time (utime + stime from /proc/PID/stat) and RSS of a
  set of processes, read before and after a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
EVENT_STAMP = re.compile(rb"ts=(\d+);")

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer {token}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,"
    .. "\\"p99_us\\":%d,\\"mean_us\\":%.1f,\\"max_us\\":%d,\\"connect\\":%d,"
    .. "\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors, timeouts and responses with a status other than 2xx/3xx."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s


def run_wrk(
    port: int,
    path: str,
    body: bytes,
    token: str,
    *,
    connections: int,
    duration_s: float,
) -> WrkResult:
    """Run wrk with one thread against 127.0.0.1:port and parse its summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=body.decode(), token=token))
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration_s:g}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=False,
        )
    finally:
        os.unlink(script.name)
    line = next(
        (l for l in completed.stdout.splitlines() if l.startswith("WRK_RESULT ")), None
    )
    if line is None:
        raise RuntimeError(
            f"wrk printed no result: {completed.stdout}\n{completed.stderr}"
        )
    raw = json.loads(line[len("WRK_RESULT ") :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
    )


# -- SSE streams -------------------------------------------------------------


@dataclass
class StreamResult:
    delays_us: list[float]
    """Delivery delay of every event: arrival at the client minus the
    upstream's write time, both on CLOCK_MONOTONIC."""
    failed: int


async def _one_stream(
    port: int, path: str, body: bytes, token: str, timeout_s: float
) -> list[float]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), timeout_s
    )
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer {token}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        delays: list[float] = []
        received = bytearray()
        scanned = 0
        deadline = time.monotonic() + timeout_s
        while b"[DONE]" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("stream did not end in time")
            data = await asyncio.wait_for(reader.read(65536), remaining)
            arrived = time.monotonic_ns()
            if not data:
                break
            received += data
            for match in EVENT_STAMP.finditer(received, scanned):
                delays.append((arrived - int(match.group(1))) / 1000)
                scanned = match.end()
        if not received.startswith(b"HTTP/1.1 200") or b"[DONE]" not in received:
            raise RuntimeError(f"stream failed: {bytes(received[:300])!r}")
        return delays
    finally:
        writer.close()


async def _streams(
    port: int,
    path: str,
    body: bytes,
    token: str,
    count: int,
    concurrency: int,
    timeout_s: float,
) -> StreamResult:
    gate = asyncio.Semaphore(concurrency)
    delays: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                delays.extend(await _one_stream(port, path, body, token, timeout_s))
            except (OSError, RuntimeError, TimeoutError):
                failed += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return StreamResult(delays, failed)


def run_streams(
    port: int,
    path: str,
    body: bytes,
    token: str,
    *,
    count: int,
    concurrency: int,
    timeout_s: float = 20.0,
) -> StreamResult:
    """Open `count` streams, at most `concurrency` at once, and time each event."""
    return asyncio.run(_streams(port, path, body, token, count, concurrency, timeout_s))


# -- process meters ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int, prefix: str) -> float:
    """Return the CPU time of the threads of `pid` whose name starts with `prefix`."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith(prefix):
                continue
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def machine_busy_seconds() -> float:
    """Return the CPU time all cores spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(f) for f in fields[:8]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """Return the CPU time of this process's waited-for children, such as wrk."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pid: int) -> int:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE_KIB


def descendants(pid: int) -> list[int]:
    """Return pid and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


class ProcessMeter:
    """CPU seconds and RSS per role, summed over each role's process trees."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles

    def _pids(self, role: str) -> list[int]:
        return [p for root in self.roles[role] for p in descendants(root)]

    def cpu(self) -> dict[str, float]:
        totals = {}
        for role in self.roles:
            total = 0.0
            for pid in self._pids(role):
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    pass
            totals[role] = total
        return totals

    def thread_cpu(self, role: str, prefix: str) -> float:
        """Return the CPU seconds of a role's threads whose name starts with `prefix`."""
        total = 0.0
        for pid in self._pids(role) if role in self.roles else []:
            try:
                total += thread_cpu_seconds(pid, prefix)
            except OSError:
                pass
        return total

    def rss(self) -> dict[str, int]:
        totals = {}
        for role in self.roles:
            total = 0
            for pid in self._pids(role):
                try:
                    total += rss_kib(pid)
                except OSError:
                    pass
            totals[role] = total
        return totals
