"""What each admin command sends and prints: a JSON document and a table.

Each command function takes the parsed arguments and a `call(method,
request)` that sends one admin API request. It returns the document
printed for --json and the table printed otherwise.
"""

from __future__ import annotations

import argparse
from datetime import timezone
from typing import Any, Callable

from ..config import PERIODS, Config
from .service import DIMENSIONS as DIMENSION_NUMBERS
from .service import LEVELS as LEVEL_NUMBERS
from .service import PERIODS as PERIOD_NUMBERS
from .v1 import admin_pb2 as pb

_BUDGET_SOURCES = {
    pb.BUDGET_SOURCE_ADMIN: "admin",
    pb.BUDGET_SOURCE_CONFIG: "config",
    pb.BUDGET_SOURCE_CONFIG_DEFAULT: "config_default",
}
_KEY_SOURCES = {pb.KEY_SOURCE_ADMIN: "admin", pb.KEY_SOURCE_CONFIG: "config"}
FILTER_OPTIONS = {
    "key": "virtual_key",
    "team": "team",
    "customer": "customer",
    "org": "org",
    "tier": "tier",
    "model": "model",
    "provider": "provider",
}
"""`spend report` options that filter records, such as --team t1, and their dimension."""

# -- keys --------------------------------------------------------------------------

Call = Callable[[str, Any], Any]
"""Sends one admin API request: call("CreateKey", request) returns the reply."""


def _create_key(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    reply = call(
        "CreateKey",
        pb.CreateKeyRequest(
            id=args.id,
            team=args.team,
            org=args.org,
            customers=args.customers,
            tiers=args.tiers,
            models=args.models,
            tier_override=args.tier_override,
        ),
    )
    key = _key_document(reply.key)
    text = (
        f"created virtual key {key['id']} for team {key['team']}, org {key['org']}\n"
        f"secret: {reply.secret}\n"
        "The secret is shown only now; the service stores its SHA-256 alone."
    )
    return {"key": key, "secret": reply.secret}, text


def _list_keys(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    reply = call(
        "ListKeys",
        pb.ListKeysRequest(include_revoked=args.all, team=args.team, org=args.org),
    )
    keys = [_key_document(key) for key in reply.keys]
    header = (
        "id",
        "team",
        "org",
        "source",
        "state",
        "customers",
        "tiers",
        "models",
        "tier_override",
        "created",
        "revoked",
    )
    rows = [
        (
            k["id"],
            k["team"],
            k["org"],
            k["source"],
            k["state"],
            _names(k["customers"], "none"),
            _names(k["tiers"], "all"),
            _names(k["models"], "all"),
            "yes" if k["tier_override"] else "no",
            _short_time(k["created_at"]),
            _short_time(k["revoked_at"]),
        )
        for k in keys
    ]
    return {"keys": keys}, _table(header, rows)


def _revoke_key(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    key = _key_document(call("RevokeKey", pb.RevokeKeyRequest(id=args.id)))
    return {"key": key}, f"revoked virtual key {key['id']}; its secret now gets 401"


def _rotate_key(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    reply = call("RotateKey", pb.RotateKeyRequest(id=args.id))
    key = _key_document(reply.key)
    text = (
        f"rotated virtual key {key['id']}; the old secret now gets 401\n"
        f"secret: {reply.secret}\n"
        "The secret is shown only now; the service stores its SHA-256 alone."
    )
    return {"key": key, "secret": reply.secret}, text


KEY_COMMANDS = {
    "create": _create_key,
    "list": _list_keys,
    "revoke": _revoke_key,
    "rotate": _rotate_key,
}


def _key_document(key: pb.VirtualKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "team": key.team,
        "org": key.org,
        "customers": list(key.customers),
        "tiers": list(key.tiers),
        "models": list(key.models),
        "tier_override": key.tier_override,
        "source": _KEY_SOURCES.get(key.source, "unknown"),
        "state": "active" if key.state == pb.KEY_STATE_ACTIVE else "revoked",
        "created_at": _iso(key.created_at) if key.HasField("created_at") else None,
        "revoked_at": _iso(key.revoked_at) if key.HasField("revoked_at") else None,
    }


# -- budgets -----------------------------------------------------------------------


def _window_request(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "level": _number(LEVEL_NUMBERS, args.level),
        "id": args.id,
        "period": _number(PERIOD_NUMBERS, args.period),
    }


def _set_budget(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    budget = _budget_document(
        call(
            "SetBudget",
            pb.SetBudgetRequest(**_window_request(args), limit_usd=args.limit_usd),
        )
    )
    return {"budget": budget}, _budget_table([budget])


def _list_budgets(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    level = _number(LEVEL_NUMBERS, args.level) if args.level else pb.LEVEL_UNSPECIFIED
    reply = call("ListBudgets", pb.ListBudgetsRequest(level=level, id=args.id or ""))
    budgets = [_budget_document(budget) for budget in reply.budgets]
    return {"budgets": budgets}, _budget_table(budgets)


def _delete_budget(args: argparse.Namespace, call: Call) -> tuple[dict[str, Any], str]:
    reply = call("DeleteBudget", pb.DeleteBudgetRequest(**_window_request(args)))
    in_effect = (
        _budget_document(reply.in_effect) if reply.HasField("in_effect") else None
    )
    text = (
        f"deleted the admin {PERIODS[args.period]} budget of {args.level} {args.id}; "
    )
    if in_effect is None:
        text += f"no {PERIODS[args.period]} budget applies to it now"
    else:
        text += (
            f"in effect now: {in_effect['source']} limit {in_effect['limit_usd']} USD"
        )
    return {"in_effect": in_effect}, text


BUDGET_COMMANDS = {"set": _set_budget, "list": _list_budgets, "delete": _delete_budget}


def _budget_document(budget: pb.Budget) -> dict[str, Any]:
    return {
        "level": LEVEL_NUMBERS.get(budget.level, "unknown"),
        "id": budget.id,
        "period": PERIOD_NUMBERS.get(budget.period, "unknown"),
        "limit_usd": budget.limit_usd,
        "source": _BUDGET_SOURCES.get(budget.source, "unknown"),
        "name": budget.name,
        "updated_at": _iso(budget.updated_at)
        if budget.HasField("updated_at")
        else None,
    }


def _budget_table(budgets: list[dict[str, Any]]) -> str:
    header = ("level", "id", "period", "limit_usd", "source", "name", "updated")
    rows = [
        (
            b["level"],
            b["id"],
            b["period"],
            b["limit_usd"],
            b["source"],
            b["name"],
            _short_time(b["updated_at"]),
        )
        for b in budgets
    ]
    return _table(header, rows)


# -- spend -------------------------------------------------------------------------


def spend_report(
    args: argparse.Namespace, call: Call, config: Config
) -> tuple[dict[str, Any], str]:
    """Request a report; the reference model defaults to admin.reference_model."""
    reference = args.reference_model
    if reference is None and config.admin is not None:
        reference = config.admin.reference_model
    filters = [
        pb.SpendFilter(dimension=_number(DIMENSION_NUMBERS, dimension), value=value)
        for option, dimension in FILTER_OPTIONS.items()
        if (value := getattr(args, option)) is not None
    ]
    request = pb.SpendReportRequest(
        filters=filters,
        group_by=[_number(DIMENSION_NUMBERS, name) for name in args.by],
        reference_model=reference or "",
    )
    if args.start is not None:
        request.start.FromDatetime(args.start)
    if args.end is not None:
        request.end.FromDatetime(args.end)
    reply = call("SpendReport", request)
    document = _report_document(reply, args.by)
    return document, _report_table(document)


COUNTERFACTUAL_NOTE = (
    "counterfactual: what the same tokens would have cost at {model}'s prices in the price "
    "table; not a charge, and it ignores differences in how models count tokens"
)


def _report_document(
    reply: pb.SpendReportResponse, group_by: list[str]
) -> dict[str, Any]:
    def row(spend: pb.SpendRow) -> dict[str, Any]:
        document: dict[str, Any] = {
            "group": dict(zip(group_by, spend.group)),
            "requests": spend.requests,
            "tokens": {
                "input": spend.tokens.input,
                "output": spend.tokens.output,
                "cache_read": spend.tokens.cache_read,
                "cache_write": spend.tokens.cache_write,
                "reasoning": spend.tokens.reasoning,
            },
            "cost_usd": spend.cost_usd,
        }
        if reply.reference_model:
            document["counterfactual_cost_usd"] = spend.reference_cost_usd
        return document

    document = {
        "start": _iso(reply.start) if reply.HasField("start") else None,
        "end": _iso(reply.end),
        "group_by": group_by,
        "rows": [row(spend) for spend in reply.rows],
        "total": row(reply.total),
    }
    if reply.reference_model:
        document["reference_model"] = reply.reference_model
        document["counterfactual"] = COUNTERFACTUAL_NOTE.format(
            model=reply.reference_model
        )
    return document


def _report_table(document: dict[str, Any]) -> str:
    group_by = document["group_by"]
    reference = document.get("reference_model")
    header = [
        *group_by,
        "requests",
        "input",
        "output",
        "cache_read",
        "cache_write",
        "cost_usd",
    ]
    if reference:
        header.append(f"at_{reference}_usd*")

    def cells(row: dict[str, Any], group: list[str]) -> list[str]:
        tokens = row["tokens"]
        line = [
            *group,
            str(row["requests"]),
            str(tokens["input"]),
            str(tokens["output"]),
            str(tokens["cache_read"]),
            str(tokens["cache_write"]),
            row["cost_usd"],
        ]
        if reference:
            line.append(row["counterfactual_cost_usd"])
        return line

    rows = []
    if group_by:
        rows = [
            cells(row, [row["group"][name] or "-" for name in group_by])
            for row in document["rows"]
        ]
        rows.append(cells(document["total"], ["total", *[""] * (len(group_by) - 1)]))
    else:
        rows.append(cells(document["total"], []))
    start = document["start"] or "the first record"
    title = f"spend from {start} to {document['end']}"
    if group_by:
        title += f", by {', '.join(group_by)}"
    text = f"{title}\n{_table(header, rows)}"
    if reference:
        text += "\n* " + document["counterfactual"]
    return text


# -- output ----------------------------------------------------------------------


def _table(header: tuple[str, ...] | list[str], rows: list[Any]) -> str:
    lines = [list(header), *[list(row) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in lines
    )


def _names(names: list[str], empty: str) -> str:
    return ",".join(names) if names else empty


def _iso(stamp: Any) -> str:
    return stamp.ToDatetime(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def _short_time(text: str | None) -> str:
    return "-" if text is None else text[:19].replace("T", " ")


def _number(numbers: dict[int, str], name: str) -> int:
    return next(number for number, known in numbers.items() if known == name)
