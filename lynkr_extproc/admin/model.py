"""Values of the admin state: stored keys and budgets, spend queries, money text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ..config import MAX_LIMIT_USD, KeyRecord
from ..money import usd_to_nanos
from ..pricing import Usage
from .errors import InvalidArgumentError

DIMENSIONS = ("virtual_key", "team", "customer", "org", "tier", "model", "provider")
"""Columns of the spend log that a report can group or filter by."""

@dataclass(frozen=True)
class StoredKey:
    """A row of the admin key table: an admin key, or a revoked lynkr.yaml key.

    A lynkr.yaml key is stored only once it is revoked or rotated, so that
    its secret is rejected although lynkr.yaml still lists it.
    """

    key_id: str
    sha256: str
    team: str
    org: str
    customers: frozenset[str] | None
    tiers: frozenset[str] | None
    models: frozenset[str] | None
    tier_override: bool
    source: str
    """"admin" or "config"."""
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def record(self) -> KeyRecord:
        return KeyRecord(
            id=self.key_id,
            sha256=self.sha256,
            team=self.team,
            org=self.org,
            customers=self.customers,
            tiers=self.tiers,
            models=self.models,
            tier_override=self.tier_override,
        )


@dataclass(frozen=True)
class StoredBudget:
    """One admin budget window; it replaces lynkr.yaml windows of its period."""

    level: str
    ident: str
    period: str
    limit_nanos: int
    updated_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """Every admin key and budget at one revision of the admin tables."""

    revision: int
    keys: tuple[StoredKey, ...]
    budgets: tuple[StoredBudget, ...]


@dataclass(frozen=True)
class SpendQuery:
    """Spend records with start <= time < end matching every filter, grouped."""

    start: datetime | None
    end: datetime
    filters: tuple[tuple[str, str], ...] = ()
    """(dimension, value) pairs; dimensions are names from DIMENSIONS."""
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpendGroup:
    """Sums over the spend records of one group."""

    group: tuple[str, ...]
    requests: int
    usage: Usage
    cost_nanos: int


def exact_usd(nanos: int) -> str:
    """Format nano-dollars exactly, with 2 to 9 decimals: "0.000156", "12.50"."""
    # The "f" format, because str() of a Decimal with 9 decimals can use an exponent ("0E-9").
    whole, _, fraction = f"{Decimal(nanos).scaleb(-9):f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


_DECIMAL = re.compile(r"^[0-9]+(?:\.([0-9]+))?$")


def parse_limit(text: str) -> int:
    """Parse a budget limit such as "12.5" into nano-dollars, or raise InvalidArgumentError."""
    match = _DECIMAL.match(text.strip())
    if match is None:
        raise InvalidArgumentError(
            f'limit_usd {text!r} is not a decimal number of USD; write it like "25" or "0.50"'
        )
    if len(match.group(1) or "") > 9:
        raise InvalidArgumentError(
            f"limit_usd {text!r} has more than 9 decimal places; amounts are exact to the nano-dollar"
        )
    nanos = usd_to_nanos(text.strip())
    if nanos > usd_to_nanos(MAX_LIMIT_USD):
        raise InvalidArgumentError(
            f"limit_usd {text!r} is above the largest supported limit of {MAX_LIMIT_USD} USD per window"
        )
    return nanos


def encode_names(names: frozenset[str] | None) -> str | None:
    """Encode a name set as a sorted JSON list for the database; None stays NULL."""
    return None if names is None else json.dumps(sorted(names))


def decode_names(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))
