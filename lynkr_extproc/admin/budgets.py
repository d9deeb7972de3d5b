"""Budget windows through the admin API: set, get, list and delete.

An admin window is identified by level, id and period. It replaces the
lynkr.yaml windows of the same period for that id, whether the id's own
or the level's defaults. lynkr.yaml windows of other periods stay in effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..config import LEVELS, PERIODS, Window
from .base import Operations, check_ident
from .errors import InvalidArgumentError, NotFoundError
from .model import StoredBudget, exact_usd, parse_limit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetView:
    """A budget window and where it comes from."""

    level: str
    ident: str
    """The id, or "*" for a lynkr.yaml level default."""
    period: str
    limit_nanos: int
    source: str
    """"admin", "config" or "config_default"."""
    name: str
    updated_at: datetime | None = None


class BudgetOperations(Operations):
    async def set_window(
        self, level: str, ident: str, period: str, limit_usd: str
    ) -> BudgetView:
        """Store one admin window, replacing any earlier one of the same period."""
        _check_window(level, ident, period)
        limit = parse_limit(limit_usd)
        budget = StoredBudget(level, ident, period, limit, self.gateway.clock())
        await self.state.store.set_budget(budget)
        await self.state.refresh()
        logger.info(
            "admin: set the %s budget of %s %s to %s USD",
            PERIODS[period],
            level,
            ident,
            exact_usd(limit),
        )
        return _admin_view(budget)

    async def get_window(self, level: str, ident: str, period: str) -> BudgetView:
        """Return the window in effect for one level, id and period."""
        _check_window(level, ident, period)
        await self.state.refresh()
        for view in self._effective(level, ident):
            if view.period == period:
                return view
        raise NotFoundError(f"no {PERIODS[period]} budget applies to {level} {ident!r}")

    async def list_windows(
        self, level: str | None, ident: str | None
    ) -> list[BudgetView]:
        """List the windows in effect.

        With an id, those that apply to it, defaults included. Without one,
        every id's own windows, then each level's lynkr.yaml defaults as "*".
        """
        if level is not None:
            _check_level(level)
        await self.state.refresh()
        levels = [level] if level else list(LEVELS)
        if ident:
            return [view for name in levels for view in self._effective(name, ident)]
        views: list[BudgetView] = []
        budgets = self.config.budgets
        for name in levels:
            idents = set(budgets.windows.get(name, {}))
            idents |= {b.ident for b in self.state.snapshot.budgets if b.level == name}
            for one in sorted(idents):
                views += self._effective(name, one, with_defaults=False)
            defaults = budgets.defaults.get(name, ())
            views += [_config_view(name, "*", w, "config_default") for w in defaults]
        return views

    async def delete_window(
        self, level: str, ident: str, period: str
    ) -> BudgetView | None:
        """Delete an admin window; return the lynkr.yaml window that applies again."""
        _check_window(level, ident, period)
        if not await self.state.store.delete_budget(level, ident, period):
            raise NotFoundError(
                f"no admin {PERIODS[period]} budget for {level} {ident!r}; "
                "budgets from lynkr.yaml change only there"
            )
        await self.state.refresh()
        logger.info(
            "admin: deleted the %s budget of %s %s", PERIODS[period], level, ident
        )
        views = self._effective(level, ident)
        return next((view for view in views if view.period == period), None)

    def _effective(
        self, level: str, ident: str, *, with_defaults: bool = True
    ) -> list[BudgetView]:
        """Return the windows of one id: lynkr.yaml's, then the admin ones replacing theirs."""
        admin = {
            b.period: b
            for b in self.state.snapshot.budgets
            if b.level == level and b.ident == ident
        }
        own = self.config.budgets.windows.get(level, {}).get(ident)
        if own is not None:
            configured = [_config_view(level, ident, w, "config") for w in own]
        elif with_defaults:
            defaults = self.config.budgets.defaults.get(level, ())
            configured = [
                _config_view(level, ident, w, "config_default") for w in defaults
            ]
        else:
            configured = []
        views = [view for view in configured if view.period not in admin]
        return views + [_admin_view(admin[p]) for p in PERIODS if p in admin]


def _admin_view(budget: StoredBudget) -> BudgetView:
    return BudgetView(
        level=budget.level,
        ident=budget.ident,
        period=budget.period,
        limit_nanos=budget.limit_nanos,
        source="admin",
        name=PERIODS[budget.period],
        updated_at=budget.updated_at,
    )


def _config_view(level: str, ident: str, window: Window, source: str) -> BudgetView:
    return BudgetView(
        level, ident, window.period, window.limit_nanos, source, window.name
    )


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InvalidArgumentError(
            f"level {level!r} is invalid; use one of {', '.join(LEVELS)}"
        )


def _check_window(level: str, ident: str, period: str) -> None:
    _check_level(level)
    check_ident(ident, "id")
    if ident == "*":
        raise InvalidArgumentError(
            "'*' is not an id; level defaults are set in lynkr.yaml under "
            "budgets.defaults"
        )
    if period not in PERIODS:
        raise InvalidArgumentError(
            f"period {period!r} is invalid; use one of {', '.join(PERIODS)}"
        )
