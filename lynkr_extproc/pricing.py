"""Model prices and the cost of a request's token usage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Mapping

import yaml

from .errors import ConfigError
from .money import parse_usd, usd_to_nanos

_PER_MILLION = Decimal(10) ** 6
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Usage:
    """Token counts of one response, normalized across API formats.

    `input_tokens` excludes cache reads and cache writes. `output_tokens`
    includes reasoning tokens, and `reasoning_tokens` is that part of it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Price:
    """USD per million tokens for one model."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    def cost_nanos(self, usage: Usage) -> int:
        """Return the cost of `usage` in nano-dollars.

        Cached tokens without a cache price fall back to the input price,
        and reasoning tokens without a reasoning price to the output price.
        """
        cache_read = self.input if self.cache_read is None else self.cache_read
        cache_write = self.input if self.cache_write is None else self.cache_write
        reasoning = self.output if self.reasoning is None else self.reasoning
        reasoning_tokens = min(usage.reasoning_tokens, usage.output_tokens)
        total = (
            usage.input_tokens * self.input
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
            + (usage.output_tokens - reasoning_tokens) * self.output
            + reasoning_tokens * reasoning
        )
        return usd_to_nanos(total / _PER_MILLION)

    def estimate_nanos(self, input_tokens: int, output_tokens: int) -> int:
        """Return the admission estimate for uncached input and output."""
        return self.cost_nanos(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        )


class PriceTable:
    """Prices by model name, resolved exactly, by alias, then undated."""

    def __init__(
        self, prices: Mapping[str, Price], aliases: Mapping[str, str]
    ) -> None:
        self._prices = dict(prices)
        self._aliases = dict(aliases)

    def lookup(self, model: str) -> Price | None:
        """Return the price of `model`, or None when it has none.

        Names resolve exactly, then through the alias table, then with a
        trailing date (-20250929 or -2024-08-06) removed. There is no
        prefix matching: "gpt-4o-foo" never takes the price of "gpt-4o".
        """
        for name in (model, _DATE_SUFFIX.sub("", model)):
            price = self._prices.get(name)
            if price is not None:
                return price
            alias = self._aliases.get(name)
            if alias is not None:
                return self._prices.get(alias)
        return None


def load_price_table(
    overrides: Mapping[str, object] | None = None,
    aliases: Mapping[str, str] | None = None,
    *,
    include_defaults: bool = True,
    path: str = "pricing",
) -> PriceTable:
    """Build the price table from the shipped data file and config overrides."""
    prices: dict[str, Price] = {}
    alias_table: dict[str, str] = {}
    if include_defaults:
        shipped = yaml.safe_load(
            resources.files("lynkr_extproc.data").joinpath("prices.yaml").read_text()
        )
        prices.update(_parse_models(shipped["models"], "prices.yaml models"))
        alias_table.update(shipped.get("aliases") or {})
    prices.update(_parse_models(overrides or {}, f"{path}.models"))
    alias_table.update(aliases or {})
    for alias, target in alias_table.items():
        if target not in prices:
            raise ConfigError(
                f"{path}.aliases.{alias}",
                f"points to {target!r}, which has no price; add it under "
                f"{path}.models or fix the name",
            )
    return PriceTable(prices, alias_table)


def _parse_models(raw: object, path: str) -> dict[str, Price]:
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected a mapping of model names, got {raw!r}")
    return {str(name): parse_price(entry, f"{path}.{name}") for name, entry in raw.items()}


def parse_price(raw: object, path: str) -> Price:
    """Parse one price entry; negative or non-finite prices are rejected."""
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected {{input: ..., output: ...}}, got {raw!r}")
    unknown = set(raw) - {"input", "output", "cache_read", "cache_write", "reasoning"}
    if unknown:
        raise ConfigError(path, f"unknown price fields {sorted(unknown)}")
    values: dict[str, Decimal | None] = {}
    for field in ("input", "output", "cache_read", "cache_write", "reasoning"):
        if field not in raw:
            if field in ("input", "output"):
                raise ConfigError(f"{path}.{field}", "missing; give USD per million tokens")
            values[field] = None
            continue
        try:
            value = parse_usd(raw[field])
        except ValueError as exc:
            raise ConfigError(f"{path}.{field}", str(exc)) from None
        if value < 0:
            raise ConfigError(
                f"{path}.{field}", f"is {value}, expected a price >= 0 USD per million"
            )
        values[field] = value
    return Price(**values)  # type: ignore[arg-type]
