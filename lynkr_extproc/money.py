"""Exact money: amounts are integer nano-dollars (1 USD = 10**9 nusd).

Prices are USD per million tokens, so a price with up to three decimals
gives an exact per-token cost in nano-dollars. Finer prices round half up
to the nano-dollar once per charge, never per token. A signed 64-bit
counter holds up to about 9.2 billion USD.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NANOS_PER_USD = 10**9
_NANO = Decimal(1).scaleb(-9)


def usd_to_nanos(value: Decimal | str | int) -> int:
    """Convert a USD amount to integer nano-dollars, rounding half up."""
    amount = Decimal(value) * NANOS_PER_USD
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def nanos_to_usd(nanos: int) -> Decimal:
    """Return nano-dollars as a Decimal with nine decimal places."""
    return (Decimal(nanos) * _NANO).quantize(_NANO)


def format_usd(nanos: int, places: int = 2) -> str:
    """Format nano-dollars as a plain decimal string with `places` decimals.

    Rounds half up, so a spend of $100.015 shows as "100.02".
    """
    quantum = Decimal(1).scaleb(-places)
    return str((Decimal(nanos) * _NANO).quantize(quantum, rounding=ROUND_HALF_UP))


def display_usd(nanos: int) -> str:
    """Format nano-dollars for people: at least 2 and at most 6 decimals.

    $100.02 shows as "100.02" and a small demo budget of $0.0005 as
    "0.0005" instead of a misleading "0.00".
    """
    text = format_usd(nanos, 6)
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


def parse_usd(raw: object) -> Decimal:
    """Parse a config or API money value; raise ValueError when invalid.

    Floats from YAML are read through their shortest repr, so 0.1 stays
    exactly one tenth.
    """
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"expected a number, got {raw!r}")
    try:
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value
