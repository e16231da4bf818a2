"""Exact money: decimals throughout, rounding only when a figure is shown."""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def round_to_total(
    amounts: Sequence[Decimal], places: int = 2, *, total: Decimal | None = None
) -> list[Decimal]:
    """Round each amount to `places` decimals so that the rounded parts add up exactly to
    the rounded whole: `total` where given (already at `places`), else the sum of the
    amounts rounded like `to_cents` (half even). Largest remainder method, in exact integers:

    1. Floor each amount to the quantum; what is left of it is its remainder.
    2. The quanta still missing from the whole go, one each, to the largest remainders;
       equal remainders go in the order of the amounts (the earlier first), so the result
       never depends on anything but the input.

    Each part is then less than one quantum from its exact amount."""
    if not amounts:
        return []
    for a in amounts:
        if not a.is_finite():
            raise ValueError(f"cannot round {a} to a total")
    # every amount as an integer count of 10**exp, exp the finest exponent of them all
    exp = min(-places, *(int(a.as_tuple().exponent) for a in amounts))
    units = [_count(a, exp) for a in amounts]
    quantum = int(10 ** (-places - exp))
    floors = [u // quantum for u in units]
    if total is None:
        whole, rest = divmod(sum(units), quantum)
        if 2 * rest > quantum or (2 * rest == quantum and whole % 2):
            whole += 1
    else:
        whole = _count(total, -places)
        if Decimal(f"{whole}E{-places}") != total:
            raise ValueError(f"the total {total} has more than {places} decimals")
    missing = whole - sum(floors)
    if not 0 <= missing <= len(amounts):
        raise ValueError(f"the parts cannot be rounded to {total}: they sum to {sum(amounts)}")
    order = sorted(range(len(units)), key=lambda i: (-(units[i] - floors[i] * quantum), i))
    for i in order[:missing]:
        floors[i] += 1
    return [Decimal(f"{f}E{-places}") for f in floors]


def _count(amount: Decimal, exp: int) -> int:
    """`amount` as a whole number of 10**exp, in exact integers (Decimal arithmetic would
    round to the context's 28 digits); finer digits, if any, are cut off."""
    sign, digits, exponent = amount.as_tuple()
    count = int("".join(map(str, digits)) or "0")
    shift = int(exponent) - exp
    scale = int(10 ** abs(shift))
    count = count * scale if shift >= 0 else count // scale
    return -count if sign else count


def plain(value: Decimal | float | int) -> str:
    """A number as plain decimal text, never in scientific notation (JSON and CSV cells):
    1e-06 -> 0.000001, 1.2345678901234567e+19 -> 12345678901234567000.0, Decimal 0E-12 ->
    0.000000000000. A float keeps a decimal point, so it reads back as a float."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else f"{text}.0"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    return str(value)


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
