"""Every admin call apart from gRPC, by area: keys, budgets and spend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .budgets import BudgetOperations
from .keys import KeyOperations
from .reports import SpendOperations
from .state import AdminState

if TYPE_CHECKING:
    from ..gateway import Gateway


class AdminOperations:
    """The operations the gRPC servicer converts messages to and from."""

    def __init__(self, state: AdminState, gateway: Gateway) -> None:
        self.keys = KeyOperations(state, gateway)
        self.budgets = BudgetOperations(state, gateway)
        self.spend = SpendOperations(state, gateway)
