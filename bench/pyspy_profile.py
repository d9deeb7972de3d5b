"""Sample a running Python process with py-spy and summarise where time goes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# Areas of code, matched in order against the file of a sample's innermost frame.
AREAS = (
    ("system calls (libc: sendmsg, write, fsync, ...)", "libc.so"),
    ("Python interpreter (C)", "libpython"),
    ("lynkr store (SQLite/Redis/ledger calls)", "lynkr_extproc/store/"),
    ("lynkr routing score", "lynkr_extproc/routing/"),
    ("lynkr request/response formats", "lynkr_extproc/formats/"),
    ("lynkr SSE decoder", "lynkr_extproc/sse.py"),
    ("lynkr processor, gateway, pricing", "lynkr_extproc/"),
    ("sqlite3 module", "sqlite3/"),
    ("redis client", "redis/"),
    ("asyncpg", "asyncpg/"),
    ("grpc.aio", "grpc/"),
    ("protobuf", "google/protobuf/"),
    ("logging", "logging/"),
    ("json", "json/"),
    ("json", "_json.c"),
    ("asyncio event loop", "asyncio/"),
    ("asyncio event loop", "selectors.py"),
    ("threading / executor", "concurrent/futures/"),
    ("threading / executor", "threading.py"),
)


MODES = {
    # Only the thread holding the GIL, with C frames: where Python CPU goes,
    # including system calls made without releasing the GIL. py-spy pauses
    # the process for each sample in this mode, which slows it down.
    "cpu": ["--gil", "--native"],
    # Every thread that is not idle, without pausing the process: shows
    # where the store's worker thread spends wall time, waits included.
    "wall": ["--threads", "--nonblocking"],
}


def start(pid: int, seconds: float, output: Path, mode: str) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` at 200 Hz into collapsed stacks."""
    command = [
        str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--rate", "200", "--format", "raw", "--output", str(output), *MODES[mode],
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for text in stack.split(";"):
        match = FRAME.match(text)
        if match:
            frames.append((match["function"], _short(match["file"])))
        else:
            frames.append((text, ""))
    return frames


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/src/", "/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _thread_name(frame: str) -> str:
    """Turn `thread (0x7f..): ThreadPoolExecutor-0_0` into a name without ids."""
    name = frame.partition(": ")[2] or frame
    return re.sub(r"[-_]\d+(_\d+)?$", "", name)


def _area(function: str, file: str) -> str:
    if not file and function.startswith("0x"):
        return "native code without symbols"
    for name, fragment in AREAS:
        if fragment in file:
            return name
    if file.endswith((".c", ".h")):
        return "Python interpreter (C)"
    if file.endswith(".py") or file.startswith("<"):
        return "other Python code (dataclasses, copy, uuid, ...)"
    return "other"


def summarise(collapsed: Path, top: int = 15) -> dict:
    """Return the sample count, the busiest functions and the time per area.

    Self time goes to the innermost frame of each sample: a C function in
    "cpu" mode, else the Python function that called into C. Inclusive
    time counts a lynkr function once per sample that has it anywhere on
    the stack.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if frames and frames[0][0].startswith("thread ("):
            threads[_thread_name(frames.pop(0)[0])] += count
        if not frames:
            continue
        total += count
        function, file = frames[-1]
        self_time[f"{function} ({file})" if file else function] += count
        areas[_area(function, file)] += count
        for name in {f"{f} ({p})" for f, p in frames if p.startswith("lynkr_extproc/")}:
            inclusive[name] += count

    def share(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, 100 * n / total) for name, n in counter.most_common(limit)]

    return {
        "samples": total,
        "threads": share(threads, 5),
        "areas": share(areas, 20),
        "self": share(self_time, top),
        "lynkr_inclusive": share(inclusive, top),
    }
