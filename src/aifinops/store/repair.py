"""Repairs of a store that an older version (or a crash between two statements of an
older version) left wrong: cost lines whose amounts no sum can hold, and the per-node
presence roll-up out of step with the samples it rolls up."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aifinops.store import rollups
from aifinops.store.db import Store

_MONEY = ("billed_cost", "effective_cost", "list_cost", "contracted_cost")


@dataclass(frozen=True)
class Repair:
    what: str
    found: int
    fixed: int
    examples: tuple[str, ...] = ()


def repair(store: Store, *, max_amount: Decimal, dry_run: bool = False) -> list[Repair]:
    """Find, and unless `dry_run` fix, in one transaction:

    1. cost lines with an amount of `max_amount` or more (the bill readers refuse such
       lines now; an older version stored them, and every sum over them then failed);
    2. `node_presence` rows that do not equal the sum of their samples (it is rebuilt from
       `gpu_usage`, and its roll-ups from it)."""
    out = []
    with store.transaction():
        bad = " OR ".join(f"abs({c}) >= ?" for c in _MONEY)
        limits = [max_amount] * len(_MONEY)
        lines = store.raw(
            f"SELECT source, provider, billing_account_id, CAST(billed_cost AS VARCHAR) "
            f"FROM cost_lines WHERE {bad} ORDER BY 1 LIMIT 5",
            limits,
        )
        found = int(store.raw(f"SELECT count(*) FROM cost_lines WHERE {bad}", limits)[0][0])
        if found and not dry_run:
            store.raw(f"DELETE FROM cost_lines WHERE {bad}", limits)
        examples = tuple(f"{s} ({p} account {a}): billed {c}" for s, p, a, c in lines)
        out.append(Repair(f"cost lines with an amount of {max_amount:,} or more", found,
                          0 if dry_run else found, examples))  # fmt: skip
        stale = int(store.raw(
            """
            SELECT count(*) FROM (
                SELECT node_id, ts_ms, sum(held_req) AS dev FROM gpu_usage GROUP BY node_id, ts_ms
            ) u FULL JOIN (
                SELECT node_id, ts_ms, sum(dev) AS dev FROM node_presence GROUP BY node_id, ts_ms
            ) p USING (node_id, ts_ms)
            WHERE u.dev IS DISTINCT FROM p.dev
            """
        )[0][0])  # fmt: skip
        if stale and not dry_run:
            store.raw("DELETE FROM node_presence")
            store.raw(
                "INSERT INTO node_presence SELECT node_id, ts_ms, sum(held_req) "
                "FROM gpu_usage GROUP BY node_id, ts_ms"
            )
            rollups.rebuild_presence(store)
        out.append(Repair("node presence instants out of step with the samples", stale,
                          0 if dry_run else stale))  # fmt: skip
    if not dry_run:
        store.reclaim()
    return out
