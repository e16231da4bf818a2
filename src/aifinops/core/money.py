"""Exact money: decimals throughout, rounding only when a figure is shown."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
CENT = Decimal("0.01")
MS_PER_HOUR = Decimal(3_600_000)

# The engine carries money in "cost units": milliseconds x dollars-per-hour. Sums of these
# are exact decimals; dividing by MS_PER_HOUR happens once, on the final rows.


def dollars_from_units(units: Decimal | int | float | None) -> Decimal:
    """Turn engine cost units (ms x $/h) into dollars, keeping all digits."""
    if units is None:
        return ZERO
    return Decimal(units) / MS_PER_HOUR


def hours_from_ms(ms: Decimal | int | float | None) -> Decimal:
    if ms is None:
        return ZERO
    return Decimal(ms) / MS_PER_HOUR


def to_cents(amount: Decimal) -> Decimal:
    """Round a shown figure to the cent (banker's rounding, like most ledgers)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def quantize(amount: Decimal, places: int = 6) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def parse_money(value: str | int | float | Decimal, *, what: str = "price") -> Decimal:
    """Parse a price from config or a file; floats go through str() so 4.1 stays 4.1."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        result = Decimal(str(value).strip().lstrip("$").replace(",", ""))
    if not result.is_finite() or result < 0:
        raise ValueError(f"{what} must be a finite, non-negative number, got {value!r}")
    return result


def window_share(start_ms: int, end_ms: int, win_start_ms: int, win_end_ms: int) -> Decimal:
    """The exact share of [start, end) that falls in the window [win_start, win_end): how
    an amount spread evenly over a period (an allocation, a bill line) is prorated."""
    span = max(end_ms - start_ms, 1)
    inside = min(end_ms, win_end_ms) - max(start_ms, win_start_ms)
    return Decimal(max(inside, 0)) / Decimal(span)
