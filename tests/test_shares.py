"""The one shared-GPU split (`core.shares`): properties on random inputs, and examples worked
by hand."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifinops.core.shares import Weight, split_by_use, split_even, split_exact

MICRO = 1_000_000  # micro-milliseconds per millisecond, as the sources carry time

totals = st.integers(min_value=0, max_value=10**15)
weights: st.SearchStrategy[Weight] = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.fractions(min_value=0, max_value=1000, max_denominator=10**4),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
weight_lists = st.lists(weights, min_size=1, max_size=12)


def quotas(total: int, ws: list[Weight]) -> list[Fraction]:
    exact = [Fraction(w) for w in ws]
    whole = sum(exact, Fraction(0))
    return [total * w / whole for w in exact]


@given(totals, weight_lists)
def test_parts_sum_exactly_to_the_whole(total: int, ws: list[Weight]) -> None:
    parts = split_exact(total, ws)
    assert len(parts) == len(ws)
    assert sum(parts) == total
    assert all(isinstance(p, int) and p >= 0 for p in parts)


@given(totals, weight_lists)
def test_each_part_is_its_quota_rounded_down_or_up(total: int, ws: list[Weight]) -> None:
    if not any(Fraction(w) for w in ws):
        return  # all zero: the even split, checked below
    for part, quota in zip(split_exact(total, ws), quotas(total, ws), strict=True):
        assert floor(quota) <= part <= ceil(quota)


@given(totals, st.integers(min_value=1, max_value=50), weights)
def test_equal_weights_give_equal_parts(total: int, n: int, w: Weight) -> None:
    parts = split_exact(total, [w] * n)
    assert parts == split_even(total, n)
    assert max(parts) - min(parts) <= 1
    if total % n == 0:
        assert parts == [total // n] * n
    # the later parts take the extra units
    assert parts == sorted(parts)


@given(totals, weight_lists, st.integers(min_value=1, max_value=10**6))
def test_only_the_proportions_count(total: int, ws: list[Weight], k: int) -> None:
    assert split_exact(total, ws) == split_exact(total, [Fraction(w) * k for w in ws])


@given(totals, weight_lists, st.integers(min_value=0, max_value=12))
def test_zero_weights_get_nothing(total: int, ws: list[Weight], at: int) -> None:
    ws = [*ws[:at], 0, *ws[at:]]
    parts = split_exact(total, ws)
    if any(Fraction(w) for w in ws):
        assert all(p == 0 for p, w in zip(parts, ws, strict=True) if Fraction(w) == 0)
    else:  # nothing measured: even
        assert parts == split_even(total, len(ws))


@given(totals, st.lists(st.one_of(st.none(), weights), min_size=1, max_size=12))
def test_split_by_use_is_even_unless_every_use_is_known(
    total: int, uses: list[Weight | None]
) -> None:
    parts = split_by_use(total, uses)
    assert sum(parts) == total
    if any(u is None for u in uses):
        assert parts == split_even(total, len(uses))
    else:
        assert parts == split_exact(total, [u for u in uses if u is not None])


def test_examples_worked_by_hand() -> None:
    minute = 60_000 * MICRO
    # a minute among three pods of one time-sliced GPU
    assert split_exact(60_000_000, [1, 1, 1]) == [20_000_000] * 3
    assert split_even(minute, 3) == [20_000 * MICRO] * 3
    # 10 = 3 + 3 + 3, one unit left: the last part takes it; two left: the last two
    assert split_exact(10, [1, 1, 1]) == [3, 3, 4]
    assert split_exact(11, [1, 1, 1]) == [3, 4, 4]
    # by SM %: 25 and 75 of 100 ms
    assert split_exact(100 * MICRO, [25, 75]) == [25 * MICRO, 75 * MICRO]
    # quotas 33.3.., 66.6..: rounded down to 33 + 66, the unit left goes to the last
    assert split_exact(100, [30, 60]) == [33, 67]
    # quotas 1.5, 1.5, 7: only the fractional ones can take the unit left, the later first
    assert split_exact(10, [3, 3, 14]) == [1, 2, 7]
    # MIG on an A100: a 3g and a 1g instance, 3/7 of the GPU not carved (idle, last);
    # 25,714,285,714.28 + 8,571,428,571.43 + 25,714,285,714.28: one unit left, to idle
    three, one = Fraction(3, 7), Fraction(1, 7)
    assert split_exact(minute, [three, one, 1 - three - one]) == [
        25_714_285_714,
        8_571_428_571,
        25_714_285_715,
    ]
    # a zero weight gets nothing; all zero (nothing measured) is even
    assert split_exact(100, [0, 1, 3]) == [0, 25, 75]
    assert split_exact(10, [0, 0, 0]) == [3, 3, 4]
    assert split_by_use(10, [50, None, 10]) == [3, 3, 4]
    # exact weights of every kind; floats at their binary value (0.2 is exactly 2 x 0.1)
    assert split_exact(3, [Decimal("0.1"), Decimal("0.2")]) == [1, 2]
    assert split_exact(3, [0.1, 0.2]) == [1, 2]
    assert split_exact(0, [1, 2]) == [0, 0]
    assert split_exact(7, [5]) == [7]


@pytest.mark.parametrize(
    ("total", "ws"),
    [(-1, [1]), (10, []), (10, [1, -1]), (10, [float("nan")]), (10, [Decimal("Infinity")])],
)
def test_impossible_splits_raise(total: int, ws: list[Weight]) -> None:
    with pytest.raises(ValueError):
        split_exact(total, ws)
