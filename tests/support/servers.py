"""Private Redis and PostgreSQL servers that one fault test can stop and start.

Each server listens on 127.0.0.1 on a port that was free when it was
created, keeps its files in its own temporary folder, and comes back on
the same port after a restart. `close()` ends the process and deletes the
folder.

`initdb` and `postgres` exit with an error when started as root. So when
the tests run as root, both run as the `postgres` system account, or as
`nobody` where that account does not exist. The `user` and `group`
arguments of `subprocess.Popen` switch to that account in the child before
exec, so the process ids the tests signal are the servers' own. Their
folders come from `tempfile.mkdtemp` under the system temporary folder and
are handed to that account, because pytest's temporary folders are private
to root.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import redis

from .ports import free_port

REDIS_SERVER = "/usr/bin/redis-server"
INITDB = "/usr/local/bin/initdb"
POSTGRES = "/usr/local/bin/postgres"


class PrivateRedis:
    """A `redis-server` without persistence: a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lynkr-test-redis-"))
        self.log_path = self.folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        """Start the server and return once it replies to PING."""
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                _raise_if_exited(self.process, "redis-server", self.log_path)
                try:
                    if client.ping():
                        return
                except (
                    redis.exceptions.ConnectionError,
                    redis.exceptions.TimeoutError,
                ):
                    time.sleep(0.05)
        finally:
            client.close()
        raise TimeoutError(
            f"redis-server on port {self.port} did not reply to PING "
            f"within {timeout_s}s; see {self.log_path}"
        )

    def kill(self) -> None:
        """End the server with SIGKILL, as a crash would."""
        _signal_and_wait(self.process, signal.SIGKILL)

    def stop(self) -> None:
        """End the server with SIGTERM. Without persistence it saves nothing."""
        _signal_and_wait(self.process, signal.SIGTERM)

    def restart(self, timeout_s: float = 10.0) -> PrivateRedis:
        """Kill the server if it runs, then start an empty one on the same port."""
        self.kill()
        return self.start(timeout_s)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_account() -> pwd.struct_passwd | None:
    """Return the account PostgreSQL runs as, or None to run as the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return pwd.getpwnam("nobody")


def _account_arguments(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _owned_folder(prefix: str, account: pwd.struct_passwd | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    return folder


def _chown_tree(root: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    os.chown(root, account.pw_uid, account.pw_gid)
    for folder, names, files in os.walk(root):
        for name in names + files:
            os.chown(os.path.join(folder, name), account.pw_uid, account.pw_gid)


class PostgresTemplate:
    """A cluster made by `initdb` once, copied by each `PrivatePostgres`.

    `initdb --no-sync` took 0.7 s on the 2-core test machine, so a test
    session runs it once. Copying the cluster took 0.5 s. The superuser is
    `postgres`, and every local connection is trusted.
    """

    def __init__(self) -> None:
        self.account = server_account()
        self.folder = _owned_folder("lynkr-test-pg-template-", self.account)
        self.data = self.folder / "data"

    def create(self) -> PostgresTemplate:
        command = [
            INITDB,
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--no-instructions",
        ]
        result = subprocess.run(
            command,
            check=False,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            **_account_arguments(self.account),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed with status {result.returncode}: {result.stderr}"
            )
        return self

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgres:
    """A `postgres` server on a copy of a template cluster, database `postgres`."""

    def __init__(self, template: PostgresTemplate) -> None:
        self.account = template.account
        self.port = free_port()
        self.folder = _owned_folder("lynkr-test-pg-", self.account)
        self.data = self.folder / "data"
        shutil.copytree(template.data, self.data)
        _chown_tree(self.data, self.account)
        self.log_path = self.folder / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout_s: float = 30.0) -> PrivatePostgres:
        """Start the server and return once asyncpg can connect."""
        command = [
            POSTGRES,
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.folder),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                **_account_arguments(self.account),
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import asyncpg

        async def connect() -> None:
            connection = await asyncpg.connect(self.url, timeout=1)
            await connection.close()

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _raise_if_exited(self.process, "postgres", self.log_path)
            try:
                asyncio.run(connect())
                return
            except (TimeoutError, OSError, asyncpg.PostgresError):
                # CannotConnectNowError (a PostgresError) while starting up.
                time.sleep(0.05)
        raise TimeoutError(
            f"postgres on port {self.port} did not accept connections "
            f"within {timeout_s}s; see {self.log_path}"
        )

    def stop(self) -> None:
        """Shut down with SIGINT, PostgreSQL's fast shutdown mode.

        Sessions are ended, their transactions aborted, committed data kept.
        """
        _signal_and_wait(self.process, signal.SIGINT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_if_exited(
    process: subprocess.Popen[bytes] | None, name: str, log_path: Path
) -> None:
    if process is not None and process.poll() is not None:
        log = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name} exited with status {process.returncode}: {log}")


def _signal_and_wait(
    process: subprocess.Popen[bytes] | None, signum: int, timeout_s: float = 30.0
) -> None:
    """Send a signal unless the process has ended, then wait for it to exit.

    A process still running after `timeout_s` gets SIGKILL.
    """
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signum)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
