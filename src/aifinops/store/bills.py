"""Queries on the stored bills (`cost_lines`): a delivery's restatements and repeats,
summaries per currency, tag coverage, and the lines a window of the allocation meets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aifinops.core.windows import from_ms
from aifinops.errors import UsageError
from aifinops.store.db import Store

_PERIOD = "coalesce(billing_period_start_ms, charge_period_start_ms)"
_SAME_PERIOD = (
    "provider IS NOT DISTINCT FROM ? AND billing_account_id IS NOT DISTINCT FROM ? "
    f"AND {_PERIOD} = ?"
)
DAY_MS = 86_400_000

# group-by names of `bills summary` -> cost_lines columns (`day` is computed)
SUMMARY_DIMENSIONS: dict[str, str | None] = {
    "provider": "provider",
    "service": "service_name",
    "account": "billing_account_id",
    "sub_account": "sub_account_id",
    "currency": "billing_currency",
    "day": None,
    "category": "service_category",
    "charge_category": "charge_category",
    "resource": "resource_id",
}


@dataclass(frozen=True)
class PeriodWritten:
    """What a delivery did to a billing period that was stored before: `restated` (it
    replaced it), `added` (another part of the same delivery: lines the store did not have),
    or `stored` (every line of it was stored already)."""

    action: str
    provider: str | None
    account: str | None
    period_start_ms: int | None
    billed_before: Decimal
    billed_after: Decimal
    currencies: str
    lines: int = 0


class AmbiguousDelivery(UsageError):
    """Some of a delivery's line ids are stored for its period and some stored ones are not
    in it: a part of a restated delivery, or parts of two versions; nothing is deleted."""


def repeats_in_stage(store: Store, stage: str) -> dict[str, tuple[int, int]]:
    """Per source file of a staged delivery: lines repeated within the file, and lines that
    an earlier file (by name) of the delivery already has. The repeated hashes are found
    first (a hash aggregate), so that only their lines, usually none, are sorted."""
    return {
        source: (int(within), int(across))
        for source, within, across in store.raw(
            "SELECT source, count(*) FILTER (WHERE first = source), "
            "count(*) FILTER (WHERE first <> source) FROM (SELECT source, "
            "row_number() OVER w AS n, first_value(source) OVER w AS first "
            f'FROM "{stage}" WHERE line_hash IN (SELECT line_hash FROM "{stage}" '
            "GROUP BY line_hash HAVING count(*) > 1) "
            "WINDOW w AS (PARTITION BY line_hash ORDER BY source)) AS repeated "
            "WHERE n > 1 GROUP BY source"
        )
    }


def store_delivery(
    store: Store,
    stage: str,
    *,
    replace: bool = False,
    repeats: bool = True,
    at_ms: int = 0,
    source: str = "",
) -> list[PeriodWritten]:
    """Write a staged delivery (call inside a transaction). A line repeated in it is kept
    once, from the first file (by name) that has it; `repeats=False` (`repeats_in_stage`
    found none) spares the sort that finds them. The stage's columns named with `_` are the
    reader's own, not stored. For each billing period (provider,
    account, period) that the store already holds:

    1. with `replace`, or where the lines carry no provider line id (FOCUS, Azure, OCI),
       the delivery restates the period: it replaces what was stored;
    2. where every line of it is stored already, nothing changes;
    3. where none of its line ids is stored, it is another part of the same delivery (a CUR
       in several files, given one by one): its lines are added;
    4. where it holds every stored line id of the period, it restates the period;
    5. otherwise it cannot be told apart: `AmbiguousDelivery`, and nothing is deleted.

    What a restatement changes (per charge day, SKU and resource) is kept in
    `bill_restatements` with `at_ms` and `source`."""
    done = []
    periods = store.raw(
        f'SELECT DISTINCT provider, billing_account_id, {_PERIOD} FROM "{stage}" ORDER BY 1, 2, 3'
    )
    for provider, account, start in periods:
        params = [provider, account, start]
        count, billed, currencies = store.raw(
            "SELECT count(*), sum(billed_cost), string_agg(DISTINCT billing_currency, '/') "
            f"FROM cost_lines WHERE {_SAME_PERIOD}",
            params,
        )[0]
        if not count:
            continue
        action = "restated" if replace else _part_or_restatement(store, stage, params)
        after = store.raw(f'SELECT sum(billed_cost), count(*) FROM "{stage}" WHERE {_SAME_PERIOD}',
                          params)[0]  # fmt: skip
        if action == "restated":
            _record_restatement(store, stage, params, at_ms, source)
            store.raw(f"DELETE FROM cost_lines WHERE {_SAME_PERIOD}", params)
        elif action == "stored":
            store.raw(f'DELETE FROM "{stage}" WHERE {_SAME_PERIOD}', params)
        done.append(PeriodWritten(action, provider, account, start, billed, after[0], currencies,
                                  int(after[1])))  # fmt: skip
    # the stage's columns but the reader's own (named with `_`)
    cols = ", ".join(f'"{c}"' for c in store.table(stage).columns if not c.startswith("_"))
    rows = f'"{stage}"'
    if repeats:
        rows = (
            f"(SELECT *, row_number() OVER (PARTITION BY line_hash ORDER BY source) AS _n "
            f'FROM "{stage}") AS staged WHERE _n = 1'
        )
    store.raw(f"INSERT INTO cost_lines ({cols}) SELECT {cols} FROM {rows}")
    return done


def _part_or_restatement(store: Store, stage: str, params: list[Any]) -> str:
    """Rules 1-5 of `store_delivery` for one period that the store holds."""
    new = f'SELECT line_id, line_hash FROM "{stage}" WHERE {_SAME_PERIOD}'
    old = f"SELECT line_id, line_hash FROM cost_lines WHERE {_SAME_PERIOD}"
    without_id, unseen, shared, missing = store.raw(
        f"""
        WITH new AS ({new}), old AS ({old})
        SELECT (SELECT count(*) FROM new WHERE line_id IS NULL)
                 + (SELECT count(*) FROM old WHERE line_id IS NULL),
               (SELECT count(*) FROM new WHERE line_hash NOT IN (SELECT line_hash FROM old)),
               (SELECT count(DISTINCT line_id) FROM new
                 WHERE line_id IN (SELECT line_id FROM old)),
               (SELECT count(DISTINCT line_id) FROM old
                 WHERE line_id NOT IN (SELECT line_id FROM new))
        """,
        [*params, *params],
    )[0]
    if without_id:
        return "restated"
    if not unseen:
        return "stored"
    if not shared:
        return "added"
    if not missing:
        return "restated"
    provider, account, start = params
    raise AmbiguousDelivery(
        f"{shared} line id(s) of this delivery are stored for {provider} account {account} "
        f"period {_day(start)} and {missing} stored one(s) are not in it: it is neither "
        "another part of the stored delivery nor a whole restatement of the period; "
        "nothing was changed",
        hint="give every file of the delivery in one command (with its manifest), or "
        "--replace to replace the period with these files",
    )


def _day(ms: int | None) -> str:
    return "?" if ms is None else from_ms(ms).date().isoformat()


def summary(
    store: Store, by: Sequence[str], window: tuple[int, int] | None
) -> list[dict[str, Any]]:
    """Billed, effective and list cost summed per group of `by` and per currency (Ibis)."""
    t = store.table("cost_lines")
    if window is not None:
        t = t.filter(
            (t.charge_period_start_ms >= window[0]) & (t.charge_period_start_ms < window[1])
        )
    keys = {}
    for d in by:
        column = SUMMARY_DIMENSIONS[d]
        if column is None:
            keys[d] = (t.charge_period_start_ms // DAY_MS * DAY_MS).cast("int64")
        else:
            keys[d] = t[column]
    keys.setdefault("currency", t.billing_currency)
    grouped = t.group_by([v.name(k) for k, v in keys.items()]).aggregate(
        billed_cost=t.billed_cost.sum(),
        effective_cost=t.effective_cost.sum(),
        list_cost=t.list_cost.sum(),
    )
    return store.arrow(grouped.order_by(list(keys))).to_pylist()


def tag_coverage(
    store: Store, tags: Sequence[str], window: tuple[int, int] | None, top: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Per currency: billed cost, the part whose lines carry every tag, and each tag's part;
    and the `top` resources with the most billed cost missing a tag."""
    where, params = "", []
    if window is not None:
        where = "WHERE charge_period_start_ms >= ? AND charge_period_start_ms < ?"
        params = list(window)

    def has(tag: str) -> str:
        return f"coalesce({store.map_value('tags', tag)}, '') <> ''"

    every = " AND ".join(has(t) for t in tags) or "TRUE"
    per_tag = "".join(f", sum(CASE WHEN {has(t)} THEN billed_cost ELSE 0 END)" for t in tags)
    totals = store.raw(
        f"SELECT billing_currency, sum(billed_cost), "
        f"sum(CASE WHEN {every} THEN billed_cost ELSE 0 END){per_tag} "
        f"FROM cost_lines {where} GROUP BY 1 ORDER BY 1",
        params,
    )
    amp = " AND " if where else "WHERE "
    untagged = store.raw(
        f"SELECT resource_id, provider, service_name, billing_currency, sum(billed_cost) "
        f"FROM cost_lines {where}{amp}NOT ({every}) AND resource_id IS NOT NULL "
        f"GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1 LIMIT {int(top)}",
        params,
    )
    return totals, untagged


def lines_in_window(store: Store, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
    """Bill lines overlapping [start, end), summed exactly: lines inside it per resource,
    provider, category and currency; lines reaching past it also per charge period (their
    start and end, for the share that falls in the window)."""
    inside = "charge_period_start_ms >= ? AND charge_period_end_ms <= ?"
    return store.raw(
        f"""
        SELECT resource_id, provider, service_category, billing_currency,
               CASE WHEN {inside} THEN NULL ELSE charge_period_start_ms END AS cs,
               CASE WHEN {inside} THEN NULL ELSE charge_period_end_ms END AS ce,
               sum(billed_cost), sum(effective_cost)
        FROM cost_lines
        WHERE charge_period_start_ms < ? AND charge_period_end_ms > ?
        GROUP BY 1, 2, 3, 4, 5, 6
        """,
        [start_ms, end_ms, start_ms, end_ms, end_ms, start_ms],
    )


def has_bills(store: Store) -> bool:
    return bool(store.raw("SELECT 1 FROM cost_lines LIMIT 1"))


def extent(store: Store) -> tuple[int, int] | None:
    """The first and last instant the stored bills charge for (None: no bill)."""
    row = store.raw("SELECT min(charge_period_start_ms), max(charge_period_end_ms) FROM cost_lines")
    return None if not row or row[0][0] is None else (int(row[0][0]), int(row[0][1]))


def _record_restatement(store: Store, stage: str, params: list[Any], at_ms: int,
                        source: str) -> None:  # fmt: skip
    """Before a restated period is replaced: keep each charge day, SKU and resource whose
    EffectiveCost the delivery changes, with both sums (the stage's repeats counted once)."""
    day = f"charge_period_start_ms // {DAY_MS} * {DAY_MS}"
    store.raw(
        f"""
        INSERT INTO bill_restatements
        SELECT ?, ?, ?, ?, day, sku_id, resource_id, sum(before), sum(after), ?
        FROM (
            SELECT {day} AS day, sku_id, resource_id, coalesce(effective_cost, 0) AS before,
                   0 AS after
            FROM cost_lines WHERE {_SAME_PERIOD}
            UNION ALL
            SELECT {day}, sku_id, resource_id, 0, coalesce(effective_cost, 0)
            FROM (
                SELECT *, row_number() OVER (PARTITION BY line_hash ORDER BY source) AS _n
                FROM "{stage}" WHERE {_SAME_PERIOD}
            ) AS staged
            WHERE _n = 1
        ) AS changed
        GROUP BY day, sku_id, resource_id HAVING sum(before) <> sum(after)
        """,
        [*params, at_ms, source, *params, *params],
    )


def restated_cells(store: Store) -> list[tuple[Any, ...]]:
    """Per billing period (provider, account, start), charge day, SKU and resource, when
    restatements changed its EffectiveCost (a list of instants, oldest first)."""
    return store.raw(
        "SELECT provider, billing_account_id, period_start_ms, charge_day_ms, sku_id, "
        "resource_id, array_agg(DISTINCT restated_ms ORDER BY restated_ms) "
        "FROM bill_restatements GROUP BY 1, 2, 3, 4, 5, 6"
    )


def effective_by_day(store: Store, by: str, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
    """EffectiveCost and PricingQuantity summed per UTC day of the charge period's start,
    the `by` dimension (SUMMARY_DIMENSIONS), SKU, resource, currency and billing period
    (provider, account, period start: what a restatement replaces)."""
    column = SUMMARY_DIMENSIONS[by]
    return store.raw(
        f"""
        SELECT charge_period_start_ms // {DAY_MS} * {DAY_MS} AS day, {column} AS scope,
               sku_id, resource_id, billing_currency, provider, billing_account_id,
               {_PERIOD} AS period, sum(coalesce(effective_cost, 0)),
               sum(coalesce(pricing_quantity, 0))
        FROM cost_lines
        WHERE charge_period_start_ms >= ? AND charge_period_start_ms < ?
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
        """,
        [start_ms, end_ms],
    )


def charge_days(store: Store) -> tuple[int, int] | None:
    """The first charge period's start and the end of the UTC day of the last one's start
    (None: no bill): the days `effective_by_day` can fill."""
    row = store.raw(
        "SELECT min(charge_period_start_ms), max(charge_period_start_ms) FROM cost_lines"
    )
    if not row or row[0][0] is None:
        return None
    return int(row[0][0]), int(row[0][1]) // DAY_MS * DAY_MS + DAY_MS
