"""ROI: each applied finding measured on its own scope before and after it was applied
(core/roi.py says how), by the allocation and, where bills cover it, by the bill; the
savings by category, their share of the baseline and the payback of an investment."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.core.model import IdlePolicy
from aifinops.core.recommend.base import Facts, GpuHolding
from aifinops.core.roi import (
    CONFIRMED,
    Measure,
    RoiReport,
    Side,
    category_of,
    cents,
    holding_cost,
    run_rate,
    scope_matches,
    summarise,
)
from aifinops.core.windows import Window, from_ms, parse_duration
from aifinops.errors import UsageError
from aifinops.store import bills as stored_bills
from aifinops.store import facts as stored_facts
from aifinops.store import findings as stored

if TYPE_CHECKING:
    from aifinops.app.bills import Bills
    from aifinops.app.context import AppContext
    from aifinops.app.costs import Costs
    from aifinops.app.findings import Findings
    from aifinops.app.recommend import Recommend

MEASURED = "measured"
APPLIED = "applied"
MOST = Decimal("1e15")  # the largest investment or running cost taken (as the API's)


def _amount(value: Decimal, what: str) -> Decimal:
    """An investment or running cost as given: a finite number from 0 to 10^15."""
    if not value.is_finite() or not Decimal(0) <= value <= MOST:
        raise UsageError(f"{what} {value} is not an amount from 0 to {MOST:,.0f}",
                         where=what, hint="a sum of money in the settings' currency, "
                         "e.g. 20000")  # fmt: skip
    return value


class Roi:
    def __init__(self, ctx: AppContext, costs: Costs, recommend: Recommend, bills: Bills,
                 findings: Findings) -> None:  # fmt: skip
        self.ctx, self.costs, self.recommend, self.bills = ctx, costs, recommend, bills
        self.findings = findings

    def report(self, *, investment: Decimal | None = None,
               monthly_cost: Decimal | None = None, record: bool = False) -> RoiReport:  # fmt: skip
        """Every applied finding measured; open findings' potential by category; the
        payback of `investment` (default: the settings' `roi.investment`). With `record`
        (and a writable store) a finding's first complete measurement is written to its
        history."""
        cfg = self.ctx.settings.roi
        investment = _amount(cfg.investment if investment is None else investment, "investment")
        monthly_cost = _amount(cfg.monthly_cost if monthly_cost is None else monthly_cost,
                               "monthly_cost")  # fmt: skip
        measure_ms = int(parse_duration(cfg.measure, what="roi.measure").total_seconds() * 1000)
        extent = self.costs.data_extent()
        data_end = stored_facts.usage_end(self.ctx.store)
        end_ms = min(self.ctx.now_ms(), data_end) if data_end else self.ctx.now_ms()
        facts: dict[tuple[int, int], Facts] = {}
        nodes: dict[tuple[int, int], dict[str, tuple[Decimal, Decimal | None]]] = {}
        bill_span = stored_bills.extent(self.ctx.store)
        start_ms = extent[0] if extent else None
        measures = [self._measure(f, measure_ms, start_ms, end_ms, facts, nodes, bill_span)
                    for f in stored.findings(self.ctx.store, status="applied")]  # fmt: skip
        if record:
            self.record(measures)
        notes = []
        fleet = Decimal(0)
        if extent:
            start = max(extent[0], end_ms - measure_ms)
            if end_ms > start:
                span = f"{from_ms(start).isoformat()},{from_ms(end_ms).isoformat()}"
                from aifinops.app.costs import CostQuery

                fleet = run_rate(self.costs.cost(CostQuery(window=span)).asset_cost,
                                 end_ms - start)  # fmt: skip
                notes.append(f"fleet run-rate from {from_ms(start).isoformat()} to "
                             f"{from_ms(end_ms).isoformat()}")  # fmt: skip
        if any(m.rule == "commitments" and m.basis != CONFIRMED for m in measures):
            notes.append("a commitment changes no list price: without a bill covering it, "
                         "its saving is the finding's estimate")  # fmt: skip
        return summarise(
            measures, self._potential(), currency=self.ctx.settings.currency,
            fleet_monthly=fleet, investment=investment, monthly_cost=monthly_cost,
            notes=notes,
        )  # fmt: skip

    # -- one applied finding ----------------------------------------------------------
    def _measure(
        self,
        f: Mapping[str, Any],
        measure_ms: int,
        start_ms: int | None,
        end_ms: int,
        facts: dict[tuple[int, int], Facts],
        nodes: dict[tuple[int, int], dict[str, tuple[Decimal, Decimal | None]]],
        bill_span: tuple[int, int] | None,
    ) -> Measure:
        scope = json.loads(f["scope"])
        applied = int(f["status_ms"])
        # both windows within the data: time before the first sample (or after the last)
        # holds no cost, and counted in a window's length it would dilute the run-rate
        before_w = (max(applied - measure_ms, start_ms or 0), applied)
        after_w = (applied, min(applied + measure_ms, end_ms))
        before = (self._side(scope, before_w, facts, nodes, bill_span)
                  if before_w[1] > before_w[0] else None)  # fmt: skip
        after = (self._side(scope, after_w, facts, nodes, bill_span)
                 if after_w[1] > after_w[0] else None)  # fmt: skip
        notes: list[str] = []
        drop = None
        if before is not None and before.list_cost == 0 and not before.nodes:
            before = None  # nothing of the scope ran in the window before
        if before is not None and before_w[0] > applied - measure_ms:
            late = timedelta(milliseconds=before_w[0] - (applied - measure_ms))
            notes.append(f"the data start {late} into the window before it was applied")
        if before is not None and after is not None and before.billed_cost is not None \
                and after.billed_cost is not None:  # fmt: skip
            drop = self._node_drop(before, after, nodes)
            scope_fell = (run_rate(before.billed_cost, before.span_ms)
                          - run_rate(after.billed_cost, after.span_ms))  # fmt: skip
            if drop is not None and drop < scope_fell:
                notes.append(
                    f"the bill of its node(s) {', '.join(before.nodes)} fell by "
                    f"{cents(max(drop, Decimal(0)))} a month, less than the "
                    f"{cents(scope_fell)} its allocation did: the capacity it freed still bills "
                    "(scale the node pool down to save it)"
                )
        if after is not None and after.span_ms < measure_ms:
            notes.append(f"provisional: {timedelta(milliseconds=after.span_ms)} of the "
                         f"{timedelta(milliseconds=measure_ms)} after it was applied")  # fmt: skip
        return Measure(
            finding_id=f["id"], rule=f["rule"], scope=scope, applied_ms=applied,
            measure_ms=measure_ms, expected=Decimal(f["monthly_saving"]), before=before,
            after=after, node_bill_drop=drop, notes=tuple(notes),
        )  # fmt: skip

    def _side(
        self,
        scope: Mapping[str, str],
        w: tuple[int, int],
        facts: dict[tuple[int, int], Facts],
        nodes: dict[tuple[int, int], dict[str, tuple[Decimal, Decimal | None]]],
        bill_span: tuple[int, int] | None,
    ) -> Side:
        """The scope over window `w`: its allocation at list price and, where the bills
        cover the window and every node it ran on, scaled to each node's billed cost."""
        if w not in facts:
            facts[w] = self.recommend.facts(Window(from_ms(w[0]), from_ms(w[1])))
        held = [h for h in facts[w].holdings if scope_matches(scope, h)]
        list_cost = sum((holding_cost(h) for h in held), Decimal(0))
        on = tuple(sorted({n for h in held for n in h.node.split(",") if n}))
        workloads = tuple(sorted({h.workload for h in held}))
        billed = None
        if bill_span is not None and bill_span[0] <= w[0] and bill_span[1] >= w[1]:
            per_node = self._node_bills(w, nodes)
            if all(per_node.get(n, (Decimal(0), None))[1] is not None for n in on):
                billed = sum((holding_cost(h) * _ratio(h, per_node) for h in held), Decimal(0))
        return Side(w[0], w[1], list_cost, billed, on, workloads)

    def _node_bills(self, w: tuple[int, int],
                    nodes: dict[tuple[int, int], dict[str, tuple[Decimal, Decimal | None]]],
                    ) -> dict[str, tuple[Decimal, Decimal | None]]:  # fmt: skip
        """Each node's list and billed cost over `w` (billed None: not in the bill)."""
        if w not in nodes:
            span = f"{from_ms(w[0]).isoformat()},{from_ms(w[1]).isoformat()}"
            report = self.bills.reconcile(window=span, by=("node",), idle=IdlePolicy.SEPARATE)
            nodes[w] = {n.node: (n.list_cost, n.billed_cost) for n in report.nodes}
        return nodes[w]

    def _node_drop(self, before: Side, after: Side,
                   nodes: dict[tuple[int, int], dict[str, tuple[Decimal, Decimal | None]]],
                   ) -> Decimal | None:  # fmt: skip
        """What the bill of the nodes the scope ran on before fell by, a month (a node the
        bill no longer charges for after counts 0 there)."""
        b = nodes.get((before.start_ms, before.end_ms), {})
        a = nodes.get((after.start_ms, after.end_ms), {})
        if not before.nodes:
            return Decimal(0)
        then = sum((b[n][1] or Decimal(0) for n in before.nodes if n in b), Decimal(0))
        now = sum((a[n][1] or Decimal(0) for n in before.nodes if n in a), Decimal(0))
        return run_rate(then, before.span_ms) - run_rate(now, after.span_ms)

    def record(self, measures: Iterable[Measure]) -> int:
        """Write each finding's first complete measurement since it was (last) applied to
        its history (once: a finding reopened and applied again is measured again); how
        many were written."""
        done = 0
        for m in measures:
            if not (m.complete and m.measured):
                continue
            events = [h["event"] for h in stored.history(self.ctx.store, m.finding_id)]
            last_applied = max((i for i, e in enumerate(events) if e == APPLIED), default=-1)
            if MEASURED in events[last_applied + 1 :]:
                continue
            with self.ctx.store.transaction():
                stored.event(self.ctx.store, m.finding_id, self.ctx.now_ms(), MEASURED, None,
                             f"{m.realised()} {self.ctx.settings.currency} a month "
                             f"({m.basis})")  # fmt: skip
            done += 1
        return done

    def _potential(self) -> dict[str, Decimal]:
        """Open findings' monthly saving by category, overlaps on one workload counted
        once across all of them (an idle notebook also rightsize-able counts under idle
        only), so the categories add up to `optimize list`'s total."""
        out: dict[str, Decimal] = {}
        for row in self.findings.listed(status="open"):  # each marked `counted` or not
            c = category_of(row["rule"])
            out[c] = out.get(c, Decimal(0)) + (Decimal(row["monthly_saving"]) if row["counted"]
                                               else Decimal(0))  # fmt: skip
        return out


def _ratio(h: GpuHolding, per_node: Mapping[str, tuple[Decimal, Decimal | None]]) -> Decimal:
    """Billed over list cost of the node(s) a holding ran on."""
    listed = billed = Decimal(0)
    for n in h.node.split(","):
        lc, bc = per_node.get(n, (Decimal(0), None))
        listed += lc
        billed += bc or Decimal(0)
    return billed / listed if listed > 0 else Decimal(1)
