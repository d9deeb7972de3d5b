"""The base of the admin operation areas (keys, budgets, spend), and id checks.

Key and budget operations first bring the local AdminState up to date,
so that their checks see changes made through other replicas, and a
change reloads the state again before the operation returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Config
from .errors import InvalidArgumentError
from .state import AdminState

if TYPE_CHECKING:
    from ..gateway import Gateway

MAX_IDENT_CHARS = 256


class Operations:
    """The state and gateway shared by the operations of one area."""

    def __init__(self, state: AdminState, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway

    @property
    def config(self) -> Config:
        """The running config, which changes on reload."""
        return self.gateway.config


def check_ident(value: str, what: str) -> str:
    """Return a team, org, customer or budget id, or raise InvalidArgumentError."""
    if not value:
        raise InvalidArgumentError(f"{what} is empty")
    printable = value.isprintable() and not any(c.isspace() for c in value)
    if len(value) > MAX_IDENT_CHARS or not printable:
        raise InvalidArgumentError(
            f"{what} {value[:40]!r} is invalid; use at most {MAX_IDENT_CHARS} "
            "printable characters without spaces"
        )
    return value
