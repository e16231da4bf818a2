"""Anomalies: the per-step allocation of a window and its history read through the cost
engine (or, for `billed`, the stored bills' EffectiveCost per day), turned into the pure
core's series (`core/anomaly.py`), and each anomaly alerted once through the budget
channels (queued with the budget alerts, sent with their retries).

The bills' drill-down is scope (provider, account, sub_account or service) -> SKU ->
resource. A SKU is one price in one pricing unit, so its PricingQuantity adds up and its
cost per unit is its price: a price change is told at the SKU (and at each resource under
it, in the same unit) and split into volume and price; a resource's own SKUs would mix
units. Each line counts on the UTC day its charge period starts (hourly lines summed into
days; a monthly fee on its first day), in the settings' currency only. A cell (day, SKU,
resource) whose EffectiveCost a later delivery of its billing period changed carries that
restatement (`bill_restatements`, written at ingest) and is tagged `bill restatement`.

A check finds (read-only); `record` writes which anomalies were alerted and queues their
deliveries, so the server checks on its read-only store and writes only what is new."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aifinops.app.budgets import Budgets
from aifinops.app.context import AppContext
from aifinops.app.costs import CostQuery, Costs
from aifinops.core.anomaly import (
    BILL_METRICS,
    BILL_SCOPES,
    DAY_MS,
    HOUR_MS,
    METRICS,
    MIN_AMOUNT,
    Amounts,
    Anomaly,
    Cell,
    Series,
    Thresholds,
    find_anomalies,
)
from aifinops.core.anomaly_alert import AnomalyEvent, anomaly_event, anomaly_event_to_dict
from aifinops.core.budgets import Channel
from aifinops.core.model import ALL_DIMENSIONS, IDLE, UNPRICED, normalise_dimension
from aifinops.core.windows import Window, from_ms, iso_ms, iso_z, to_ms
from aifinops.errors import UsageError
from aifinops.store import anomalies as stored
from aifinops.store import bills as stored_bills
from aifinops.store import budgets as stored_budgets
from aifinops.store import facts as stored_facts

TOKENS_PATH = "(tokens served)"  # the denominator's own contributor under a model
BILL_LEVELS = ("sku", "resource")  # under the scope, for `billed`


@dataclass
class AnomalyReport:
    window: Window
    step: str
    metric: str
    by: str
    thresholds: Thresholds
    currency: str
    anomalies: list[Anomaly]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.iso(), "step": self.step, "metric": self.metric,
            "by": self.by, "currency": self.currency,
            "sensitivity": self.thresholds.sensitivity,
            "min_amount": str(self.thresholds.min_amount),
            "min_relative": str(self.thresholds.min_relative),
            "anomalies": [a.to_dict() for a in self.anomalies], "notes": list(self.notes),
        }  # fmt: skip

    def table(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """One row per anomaly, its top contributor beside it (for the table and CSV)."""
        columns = ("start", "scope", "direction", "actual", "expected", "delta", "relative",
                   "top_contributor", "top_share", "tags", "id")  # fmt: skip
        rows = []
        for a in self.anomalies:
            top = a.contributors[0] if a.contributors else None
            rows.append({"start": iso_z(a.start_ms), "scope": a.scope,
                         "direction": a.direction, "actual": str(a.actual),
                         "expected": str(a.expected), "delta": str(a.delta),
                         "relative": None if a.relative is None else str(a.relative),
                         "top_contributor": top.name if top else None,
                         "top_share": str(top.share) if top and top.share is not None else None,
                         "tags": ", ".join(top.tags) if top else "", "id": a.id})  # fmt: skip
        return columns, rows


@dataclass
class AnomalyCheck:
    at: datetime
    reports: list[AnomalyReport]
    events: list[AnomalyEvent]  # anomalies not alerted before
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso_z(self.at), "reports": [r.to_dict() for r in self.reports],
                "alerted": [e.key for e in self.events], "queued": self.queued}  # fmt: skip


class Anomalies:
    def __init__(self, ctx: AppContext, costs: Costs, budgets: Budgets):
        self.ctx, self.costs, self.budgets = ctx, costs, budgets

    def thresholds(self, metric: str) -> Thresholds:
        cfg = self.ctx.settings.anomalies
        least = {**MIN_AMOUNT, **cfg.min_amount}[metric]
        return Thresholds(cfg.sensitivity, least, cfg.min_relative)

    def find(self, *, window: str | None = None, last: str | None = None,
             by: str | None = None, metric: str = "spend") -> AnomalyReport:  # fmt: skip
        """The anomalies of every complete step in the window (default: the 7 days up to
        the newest sample, or bill line): hourly steps for a window of 2 days or less, else
        daily; `billed` is always daily."""
        if metric not in METRICS:
            raise UsageError(f"unknown metric {metric!r}", where="--metric",
                             hint=", ".join(METRICS))  # fmt: skip
        billed = metric in BILL_METRICS
        by = _scope_of(metric, by)
        for flag, text in (("--window", window), ("--last", last)):
            if text is not None and not text.strip():  # given, but empty: not the default
                hint = "--window START,END or --last 7d (neither: the last 7 days)"
                raise UsageError(f"{flag} is empty", where=flag, hint=hint)
        win = self._bill_window(window, last) if billed else self.costs.resolve_window(
            window, last)  # fmt: skip
        step_ms = HOUR_MS if not billed and win.end - win.start <= timedelta(days=2) else DAY_MS
        step = "1h" if step_ms == HOUR_MS else "1d"
        th = self.thresholds(metric)
        report = AnomalyReport(win, step, metric, by, th, self.ctx.settings.currency, [])
        if billed:
            extent = stored_bills.charge_days(self.ctx.store)
            end_data = None if extent is None else extent[1]
        else:
            extent = stored_facts.usage_extent(self.ctx.store)
            end_data = stored_facts.usage_end(self.ctx.store)
        if extent is None or end_data is None:
            report.notes.append("the store holds no bills" if billed
                                else "the store holds no GPU samples")  # fmt: skip
            return report
        judged_start = _down(to_ms(win.start), step_ms)
        judged_end = min(_down(to_ms(win.end) + step_ms - 1, step_ms), _down(end_data, step_ms))
        history = 56 * DAY_MS if step_ms == DAY_MS else 14 * DAY_MS
        start = max(judged_start - history, _down(extent[0], step_ms))
        if judged_end <= max(start, judged_start):
            what = "bill lines" if billed else "samples"
            report.notes.append(
                f"no complete step of the window holds {what} (they run from "
                f"{iso_z(extent[0])} to {iso_z(end_data)}; without --window or --last, the "
                f"7 days up to the newest of them)")  # fmt: skip
            return report
        if billed:
            levels = (by, *BILL_LEVELS)
            cells = self._bill_cells(start, judged_end, by, report.notes)
            unpriced: dict[tuple[int, str], Decimal] = {}
            # a SKU's quantities (and a resource's under it) are in one unit
            priced = dict.fromkeys(BILL_LEVELS, "quantity")
        else:
            levels = (by, *(d for d in ("workload", "node") if d != by))
            cells, unpriced = self._cells(start, judged_end, step_ms, levels, metric)
            priced = {"node": "gpu_hours"}
        steps = tuple(range(start, judged_end, step_ms))
        series = Series(metric, levels, step_ms, steps, (max(judged_start, start) - start)
                        // step_ms, tuple(cells), unpriced, priced)  # fmt: skip
        report.anomalies = sorted(find_anomalies(series, th),
                                  key=lambda a: (a.start_ms, -abs(a.delta), a.scope))  # fmt: skip
        judged_from = max(judged_start, start + (28 if step_ms == DAY_MS else 7 * 24) * step_ms)
        if judged_from > judged_start:
            report.notes.append(
                f"steps before {iso_z(judged_from)} have too little history for the seasonal "
                "reference (28 days, or 7 days hourly): compared with the steps just before"
            )
        return report

    def _bill_window(self, window: str | None, last: str | None) -> Window:
        """The window asked for, or the 7 days up to the end of the newest bill line's day."""
        if window or last:
            return self.costs.resolve_window(window, last)
        days = stored_bills.charge_days(self.ctx.store)
        if days is None:
            raise UsageError(
                "the store holds no bills yet", where=self.ctx.store_name,
                hint="ingest some (aifinops ingest focus|cur|azure|oci FILE)")  # fmt: skip
        end = from_ms(days[1])
        return Window(end - timedelta(days=7), end)

    def _bill_cells(self, start: int, end: int, by: str, notes: list[str]) -> list[Cell]:
        """The bills' EffectiveCost and PricingQuantity per day by scope, SKU and resource
        in the settings' currency; a cell whose day a restatement changed says which."""
        said: dict[tuple[Any, ...], tuple[str, ...]] = {}
        for provider, account, period, day, sku, resource, at in stored_bills.restated_cells(
            self.ctx.store
        ):
            first = "?" if period is None else from_ms(period).date().isoformat()
            said[(provider, account, period, day, sku, resource)] = tuple(
                f"{provider} account {account} period {first}, restated {iso_z(ms)}" for ms in at
            )
        currency, cells, foreign = self.ctx.settings.currency, [], set()
        lines = stored_bills.effective_by_day(self.ctx.store, by, start, end)
        for day, scope, sku, resource, cur, provider, account, period, cost, quantity in lines:
            if cur != currency:
                foreign.add(cur or "no currency")
                continue
            path = (scope or f"(no {by})", sku or "(no sku)", resource or "(no resource)")
            restated = said.get((provider, account, period, day, sku, resource), ())
            cells.append(Cell((day - start) // DAY_MS, path,
                              Amounts(cost=cost, quantity=quantity), restated))  # fmt: skip
        if foreign:
            notes.append(f"bill lines in {', '.join(sorted(foreign))} are left out: only "
                         f"{currency} is counted (currencies are never added up)")  # fmt: skip
        return cells

    def _cells(self, start: int, end: int, step_ms: int, levels: tuple[str, ...],
               metric: str) -> tuple[list[Cell], dict[tuple[int, str], Decimal]]:  # fmt: skip
        """The allocation per step by the drill-down's levels, buckets kept on their node,
        as cells; and the GPU-hours each node ran unpriced per step."""
        span = f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"
        q = CostQuery(window=span, step="1h" if step_ms == HOUR_MS else "1d", by=levels,
                      node_buckets=True,
                      idle="weighted" if metric == "idle_share" else None)  # fmt: skip
        report = self.costs.cost(q)
        cells, unpriced = [], defaultdict(Decimal)
        for r in report.rows:
            t = ((iso_ms(r.start) or start) - start) // step_ms
            path = tuple(str(r.key[d]) for d in levels)
            if r.key.get(levels[0]) == UNPRICED and "node" in r.key:
                unpriced[(t, str(r.key["node"]))] += r.gpu_hours
            cost = r.total_cost + r.idle_cost
            idle = cost if r.key.get(levels[0]) == IDLE else r.idle_cost
            cells.append(Cell(t, path, Amounts(cost, r.gpu_hours, idle)))
        if metric == "cost_per_1m_tokens":
            for r in stored.tokens_by_step(self.ctx.store, start, end, step_ms).to_pylist():
                path = (r["model"], *([TOKENS_PATH] * (len(levels) - 1)))
                amounts = Amounts(tokens=Decimal(repr(float(r["tokens"] or 0.0))))
                cells.append(Cell((r["step"] - start) // step_ms, path, amounts))
        return cells, dict(unpriced)

    # -- alerts -------------------------------------------------------------------------
    def check(self, at: datetime | None = None) -> AnomalyCheck:
        """The anomalies of the settings' metrics over `anomalies.last` up to the newest
        sample; those not alerted before become events for `anomalies.channels`."""
        cfg = self.ctx.settings.anomalies
        at = at or self.ctx.clock()
        result = AnomalyCheck(at, [], [])
        from aifinops.core.windows import align_up, parse_duration

        end = stored_facts.usage_end(self.ctx.store)
        window = None
        if end is not None:
            stop = align_up(from_ms(end), timedelta(hours=1))
            window = f"{(stop - parse_duration(cfg.last, what='anomalies.last')).isoformat()}," \
                     f"{stop.isoformat()}"  # fmt: skip
        channels = tuple(Channel(name=n) for n in cfg.channels)
        for ch in channels:  # a channel not configured is an error now, not at sending
            self.budgets.channel(ch, "anomalies.channels")
        found = []
        for metric in cfg.metrics:
            if metric in BILL_METRICS:  # the bills' own days, by the bills' own scopes
                days = stored_bills.charge_days(self.ctx.store)
                if days is None:
                    continue
                until = from_ms(days[1])
                since = until - parse_duration(cfg.last, what="anomalies.last")
                report = self.find(window=f"{since.isoformat()},{until.isoformat()}",
                                   by=cfg.bills_by, metric=metric)  # fmt: skip
            elif window is None:  # no GPU samples
                continue
            else:
                report = self.find(window=window, by=cfg.by, metric=metric)
            result.reports.append(report)
            found += report.anomalies
        done = stored.alerted(self.ctx.store, (a.id for a in found))
        currency = self.ctx.settings.currency
        result.events = [anomaly_event(a, currency, iso_z(at) or "", channels)
                         for a in found if a.id not in done]  # fmt: skip
        return result

    def record(self, result: AnomalyCheck) -> int:
        """Mark each new anomaly alerted and queue it for its channels, once."""
        at_ms = to_ms(result.at)
        queued = 0
        with self.ctx.store.transaction():
            for e in result.events:
                doc = json.dumps(anomaly_event_to_dict(e))
                row = {"id": e.key, "metric": e.metric, "scope": e.scope,
                       "step_ms": iso_ms(e.period_start) or 0, "fired_ms": at_ms,
                       "event": doc}  # fmt: skip
                if not stored.mark_alerted(self.ctx.store, row):
                    continue
                for ch in e.channels:
                    ident, _ = self.budgets.channel(ch, "anomalies.channels")
                    spec = json.dumps(ch.model_dump(exclude_none=True), sort_keys=True)
                    queued += stored_budgets.add_delivery(self.ctx.store, e.key, e.action,
                                                          ident, spec, doc, at_ms)  # fmt: skip
        result.queued = queued
        return queued


def _scope_of(metric: str, by: str | None) -> str:
    """The `--by` dimension checked against the metric: the bills' own for `billed`, the
    allocation's for the others (default: provider, team)."""
    if metric in BILL_METRICS:
        if by is None:
            return "provider"
        if by not in BILL_SCOPES:
            raise UsageError(f"cannot group billed cost by {by!r}", where="--by",
                             hint="the bills' dimensions: " + ", ".join(BILL_SCOPES))  # fmt: skip
        return by
    by = normalise_dimension(by or "team")
    if by not in ALL_DIMENSIONS:
        raise UsageError(f"cannot group {metric} by {by!r}", where="--by",
                         hint="choose from " + ", ".join(ALL_DIMENSIONS) + " (or, with "
                         "--metric billed, " + ", ".join(BILL_SCOPES) + ")")  # fmt: skip
    if metric == "cost_per_1m_tokens" and by != "model":
        raise UsageError("cost per 1M tokens is per model", where="--by", hint="--by model")
    return by


def _down(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms
