"""`serve --workers N`: N ext_proc processes on consecutive ports.

One Python process saturates one core, and SO_REUSEPORT does not spread
Envoy's few long-lived HTTP/2 connections over processes. So worker i
listens on server.listen's port + i, and the generated Envoy config lists
every worker as an endpoint of the ext_proc cluster, which balances
streams round-robin. The supervisor forwards SIGTERM, SIGINT and SIGHUP
to the workers and exits when they have all exited.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

logger = logging.getLogger(__name__)


def worker_address(listen: str, index: int) -> str:
    """Return the address of worker `index`: server.listen's port + index."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + index}"


def supervise(config_path: str, workers: int, grace_s: float) -> int:
    """Run `workers` serve processes until a signal; return the worst exit status."""
    command = [sys.executable, "-m", "lynkr_extproc", "serve", "--config", config_path, "--grace", str(grace_s)]
    children = [subprocess.Popen([*command, "--worker-index", str(i)]) for i in range(workers)]
    logger.info("started %d workers: pids %s", workers, ", ".join(str(c.pid) for c in children))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while any(child.poll() is None for child in children):
        exited = [child for child in children if child.poll() is not None and child.returncode != 0]
        if exited and not getattr(supervise, "_stopping", False):
            logger.error("worker %d exited with %d; stopping the others", exited[0].pid, exited[0].returncode)
            supervise._stopping = True  # type: ignore[attr-defined]
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return max((abs(child.returncode) for child in children), default=0)
