"""`lynkr-extproc keys | budgets | spend report`: the admin API from the command line.

Each command reads lynkr.yaml for admin.listen and the token variable
admin.token_env, calls the API over gRPC and prints a table, or JSON with
--json. Money is printed exactly, as the API returns it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

import grpc

from ..config import LEVELS, PERIODS, Config
from .cli_commands import BUDGET_COMMANDS, FILTER_OPTIONS, KEY_COMMANDS, spend_report
from .model import DIMENSIONS
from .v1 import admin_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 60.0
LEVEL_NAMES = {**{name: name for name in LEVELS}, "key": "virtual_key"}
"""Level names accepted on the command line; "key" is short for virtual_key."""
DIMENSION_NAMES = {**{name: name for name in DIMENSIONS}, "key": "virtual_key"}


class CommandError(Exception):
    """A command that cannot run as given; the message gives the reason and the fix."""


def add_commands(commands: Any, spend: argparse.ArgumentParser) -> None:
    """Add `keys` and `budgets` to the top-level commands and `report` under `spend`."""
    keys = commands.add_parser(
        "keys", help="create, list, revoke or rotate virtual keys (admin API)"
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = _leaf(
        key_commands, "create", "create a virtual key and print its secret once"
    )
    create.add_argument(
        "--id",
        default="",
        help="key id (default: generated, such as vk-3f9c2a7d51e0b846)",
    )
    create.add_argument("--team", required=True)
    create.add_argument("--org", required=True)
    create.add_argument(
        "--customers", type=_list, default=[], help="comma-separated customer ids, or *"
    )
    create.add_argument(
        "--tiers",
        type=_list,
        default=[],
        help="comma-separated tiers (default: every tier)",
    )
    create.add_argument(
        "--models",
        type=_list,
        default=[],
        help="comma-separated client models (default: any)",
    )
    create.add_argument(
        "--tier-override",
        action="store_true",
        help="let the lynkr-tier header pick the tier",
    )
    listing = _leaf(key_commands, "list", "list virtual keys, without secrets")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--team", default="", help="only keys of this team")
    listing.add_argument("--org", default="", help="only keys of this org")
    for name, text in (
        ("revoke", "revoke a key: its secret gets 401 at once"),
        ("rotate", "give a key a new secret and revoke the old one"),
    ):
        _leaf(key_commands, name, text).add_argument("id", help="key id")

    budgets = commands.add_parser(
        "budgets", help="set, list or delete budget windows (admin API)"
    )
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True)
    setting = _leaf(
        budget_commands,
        "set",
        "set one budget window; it replaces lynkr.yaml's of that period",
    )
    _window_arguments(setting)
    setting.add_argument(
        "limit_usd", help="limit in USD, such as 25 or 0.50; 0 suspends"
    )
    listing = _leaf(budget_commands, "list", "list the budget windows in effect")
    listing.add_argument(
        "--level", type=_level, default=None, help=f"one of {', '.join(LEVEL_NAMES)}"
    )
    listing.add_argument(
        "--id", default=None, help="only the windows that apply to this id"
    )
    _window_arguments(
        _leaf(
            budget_commands,
            "delete",
            "delete an admin window; lynkr.yaml applies again",
        )
    )

    report_commands = spend.add_subparsers(dest="spend_command")
    report = _leaf(
        report_commands,
        "report",
        "sum spend over a time range by team, tier, model ...",
        config_required=False,
    )
    report.add_argument(
        "--from",
        dest="start",
        type=_moment,
        default=None,
        help="start, ISO 8601 such as 2026-12-01 or 2026-12-01T08:00:00+01:00 (UTC if no offset)",
    )
    report.add_argument(
        "--to",
        dest="end",
        type=_moment,
        default=None,
        help="end, exclusive (default: now)",
    )
    report.add_argument(
        "--by",
        type=_dimensions,
        default=[],
        help=f"comma-separated dimensions to group by: {', '.join(DIMENSION_NAMES)}",
    )
    for dimension in FILTER_OPTIONS:
        report.add_argument(
            f"--{dimension}", default=None, help=f"only records of this {dimension}"
        )
    report.add_argument(
        "--reference-model",
        default=None,
        help="also price the tokens at this model, as a counterfactual "
        "(default: admin.reference_model)",
    )


def _leaf(
    commands: Any, name: str, text: str, *, config_required: bool = True
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=text, description=text)
    if config_required:
        command.add_argument("--config", required=True, help="path to lynkr.yaml")
    else:
        # SUPPRESS keeps a --config given before `report` (spend --config X report).
        command.add_argument(
            "--config", default=argparse.SUPPRESS, help="path to lynkr.yaml"
        )
    command.add_argument(
        "--address",
        default=None,
        help="host:port of the admin API (default: admin.listen)",
    )
    command.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )
    return command


def _window_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("level", type=_level, help=f"one of {', '.join(LEVEL_NAMES)}")
    command.add_argument("id", help="the key id, team, customer or org")
    command.add_argument("period", choices=list(PERIODS))


def is_admin_command(args: argparse.Namespace) -> bool:
    return (
        args.command in ("keys", "budgets")
        or getattr(args, "spend_command", None) == "report"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one admin command; return the exit status."""
    try:
        with _connect(args, config) as call:
            if args.command == "keys":
                document, table = KEY_COMMANDS[args.keys_command](args, call)
            elif args.command == "budgets":
                document, table = BUDGET_COMMANDS[args.budgets_command](args, call)
            else:
                document, table = spend_report(args, call, config)
    except CommandError as exc:
        print(f"lynkr-extproc: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(
            f"lynkr-extproc: admin API: {exc.code().name}: {exc.details()}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(table)
    return 0


class _Connection:
    """A channel to the admin API whose calls carry the bearer token."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.AdminStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __enter__(self) -> "_Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()

    def __call__(self, method: str, request: Any) -> Any:
        return getattr(self._stub, method)(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_S
        )


def _connect(args: argparse.Namespace, config: Config) -> _Connection:
    settings = config.admin
    if settings is None:
        raise CommandError(
            "lynkr.yaml has no admin: section; add admin.listen and admin.token_env"
        )
    address = args.address or settings.listen
    if address is None:
        raise CommandError(
            "lynkr.yaml has no admin.listen; set it or pass --address HOST:PORT"
        )
    if settings.token_env is None:
        raise CommandError(
            "lynkr.yaml has no admin.token_env; name the environment variable "
            "that holds the admin token"
        )
    if settings.token is None:
        raise CommandError(
            f"environment variable {settings.token_env} is not set; export the "
            "admin token in it"
        )
    return _Connection(address, settings.token)


# -- argument types ------------------------------------------------------------


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _level(text: str) -> str:
    if text not in LEVEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a level; use one of {', '.join(LEVEL_NAMES)}"
        )
    return LEVEL_NAMES[text]


def _dimensions(text: str) -> list[str]:
    names = _list(text)
    for name in names:
        if name not in DIMENSION_NAMES:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a dimension; use {', '.join(DIMENSION_NAMES)}"
            )
    return [DIMENSION_NAMES[name] for name in names]


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time, such as 2026-12-01 or 2026-12-01T08:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
