"""The summary of a window: one JSON-able dict that the report (`aifinops report`) and the
dashboard's overview both show, put together from the other parts' answers only (costs,
forecasts, budgets, findings, anomalies, ROI); none of their arithmetic is done here.

Money is exact (Decimal) until this dict, where it becomes float rounded like
`CostReport.to_dict` (6 places; the parts' own cent strings as they give them). A part that
cannot be had for want of data (no budgets, no findings, too little history to forecast)
is empty or None, and `notes` says why; a store with no samples at all is a usage error."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.app.costs import CostQuery
from aifinops.core.model import IDLE, CostReport, CostRow
from aifinops.core.money import ZERO, quantize
from aifinops.core.windows import Window, iso_z
from aifinops.errors import AifinopsError, UsageError

if TYPE_CHECKING:
    from aifinops.app.anomalies import Anomalies
    from aifinops.app.budgets import Budgets
    from aifinops.app.context import AppContext
    from aifinops.app.costs import Costs
    from aifinops.app.findings import Findings
    from aifinops.app.forecast import Forecasts
    from aifinops.app.roi import Roi

TOP = 10  # recommendations and anomalies shown


def money(amount: Decimal, places: int = 6) -> float:
    """An exact amount as the summary's float (as `CostReport.to_dict` writes them)."""
    return float(quantize(amount, places))


def cents(text: str | None) -> float | None:
    """A part's amount written as text ("1234.50"), as a float."""
    return None if text is None else float(Decimal(text))


def cost_rows(report: CostReport) -> list[dict[str, Any]]:
    """A cost report's rows, largest cost first (buckets among them, as `cost` lists them)."""
    rows = sorted(report.rows, key=lambda r: (-r.total_cost, tuple(r.key.values())))
    out = []
    for r in rows:
        eff = r.gpu_efficiency
        out.append({"key": dict(r.key), "total_cost": money(r.total_cost),
                    "gpu_hours": money(r.gpu_hours), "idle_cost": money(_idle_of(r)),
                    "waste_cost": money(r.waste_cost),
                    "gpu_efficiency": None if eff is None else float(quantize(eff, 4)),
                    })  # fmt: skip
    return out


def _idle_of(row: CostRow) -> Decimal:
    """Idle in a row: the whole of an `__idle__` bucket, or what the idle policy shared into
    a workload's row (nothing under `separate`)."""
    return row.total_cost if row.is_bucket(IDLE) else row.idle_cost


class Summary:
    def __init__(self, ctx: AppContext, costs: Costs, forecasts: Forecasts, budgets: Budgets,
                 findings: Findings, anomalies: Anomalies, roi: Roi):  # fmt: skip
        self.ctx, self.costs, self.forecasts, self.budgets = ctx, costs, forecasts, budgets
        self.findings, self.anomalies, self.roi = findings, anomalies, roi

    def summary(self, window: str | None = None, last: str | None = None,
                by: Sequence[str] = ("team",)) -> dict[str, Any]:  # fmt: skip
        """The window's spend against the one before it, idle, waste and efficiency, its
        rows by `by`, spend per day, the month-end forecast, budgets, recommendations,
        anomalies and ROI (the default window: `cost`'s, the 7 days up to the newest
        sample)."""
        if self.costs.data_extent() is None:
            raise UsageError("the store holds no GPU samples yet: nothing to summarise",
                             where=self.ctx.store_name,
                             hint="ingest some (aifinops ingest nvidia-smi DIR) or run "
                             "`aifinops demo`")  # fmt: skip
        report = self.costs.cost(CostQuery(window=window, last=last, by=tuple(by)))
        win = report.window
        prev = Window(win.start - (win.end - win.start), win.start)
        before = self.costs.cost(CostQuery(window=_span(prev), by=()))
        notes = list(report.notes)
        spend = report.total_cost
        previous = before.total_cost if before.rows else None
        if previous is None:
            notes.append(f"no data in the previous window ({iso_z(prev.start)} to "
                         f"{iso_z(prev.end)}): no change to show")  # fmt: skip
        held = [r for r in report.rows if r.gpu_efficiency is not None]
        held_hours = sum((r.gpu_hours for r in held), ZERO)
        used_hours = sum((r.used_gpu_hours for r in held), ZERO)
        forecast = self._forecast(win, notes)
        return {
            "window": {"start": iso_z(win.start), "end": iso_z(win.end)},
            "previous": {"start": iso_z(prev.start), "end": iso_z(prev.end)},
            "currency": report.currency,
            "spend": money(spend),
            "previous_spend": None if previous is None else money(previous),
            "change": None if previous is None else money(spend - previous),
            "change_pct": None if not previous else float(
                quantize((spend - previous) * 100 / previous, 2)),
            "gpu_hours": money(sum((r.gpu_hours for r in report.rows), ZERO)),
            "idle_cost": money(sum((_idle_of(r) for r in report.rows), ZERO)),
            "waste_cost": money(sum((r.waste_cost for r in report.rows), ZERO)),
            "gpu_efficiency": float(quantize(used_hours / held_hours, 4)) if held_hours else None,
            "unpriced": [{"node": u.node, "gpu_model": u.gpu_model,
                          "gpu_hours": money(u.gpu_hours), "reason": u.reason}
                         for u in report.unpriced],
            "by": list(report.by),
            "rows": cost_rows(report),
            "daily": self._daily(win),
            "forecast": forecast,
            "budgets": self._budgets(win, notes),
            "recommendations": self._recommendations(notes),
            "anomalies": self._anomalies(win, notes),
            "roi": self._roi(notes),
            "notes": notes,
        }  # fmt: skip

    def _daily(self, win: Window) -> list[dict[str, Any]]:
        """The window's spend per day: 24-hour steps from its start (UTC midnights for a
        window that starts at one), every row of the step, buckets too."""
        days: dict[str, Decimal] = {}
        for r in self.costs.cost(CostQuery(window=_span(win), step="1d", by=())).rows:
            if r.start is not None:
                days[r.start] = days.get(r.start, ZERO) + r.total_cost
        return [{"start": k, "total_cost": money(v)} for k, v in sorted(days.items())]

    def _forecast(self, win: Window, notes: list[str]) -> dict[str, Any] | None:
        """The whole fleet's month-end forecast as of the window's end (or the newest sample
        before it): `forecast --by "" --period-end`."""
        try:
            result = self.forecasts.forecast(by=(), period_end=True, at=win.end)
        except AifinopsError as error:
            notes.append(f"no forecast: {error.message}")
            return None
        if result.total is None or not result.total.periods:
            notes.append("no forecast: " + ("; ".join(result.notes) or "no spend in the history"))
            return None
        total = result.total
        month = total.periods[0].to_dict()
        return {
            "period": month["start"][:7], "at": iso_z(result.at),
            "spent": cents(month["actual"]), "forecast": cents(month["forecast"]),
            "low80": cents(month["interval80"][0]), "high80": cents(month["interval80"][1]),
            "low95": cents(month["interval95"][0]), "high95": cents(month["interval95"][1]),
            "method": total.forecast.method,
            "notes": [n for n in (total.forecast.note, *result.notes) if n],
        }  # fmt: skip

    def _budgets(self, win: Window, notes: list[str]) -> list[dict[str, Any]]:
        """Each budget's status at the window's end, as `budget status` shows it."""
        try:
            statuses = self.budgets.statuses(at=win.end)
        except AifinopsError as error:
            notes.append(f"no budget status: {error.message}")
            return []
        if not statuses:
            notes.append("no budgets declared (budget apply FILE, or `budgets:` in the config)")
        out = []
        for st in statuses:
            d = st.to_dict()
            out.append({"name": d["name"], "state": d["budgetStatus"],
                        "spend": cents(d["currentSpend"]), "limit": cents(d["limit"]),
                        "percent": cents(d["percentageUsed"]),
                        "projected": cents(d["projectedPeriodSpend"]["amount"]),
                        "period": d["period"]})  # fmt: skip
        return out

    def _recommendations(self, notes: list[str]) -> dict[str, Any]:
        """The open findings (`optimize list`): their monthly saving, overlaps counted once,
        and the largest."""
        from aifinops.core.recommend import total_saving

        try:
            found = self.findings.listed()
        except AifinopsError as error:
            notes.append(f"no recommendations: {error.message}")
            found = []
        if not found:
            notes.append("no open recommendations (aifinops optimize finds them)")
        top = [{"id": f["id"], "rule": f["rule"], "title": _title(f["action"]),
                "action": f["action"], "monthly_saving": cents(f["monthly_saving"]),
                "severity": f["severity"], "team": f["scope"].get("team"),
                "counted": f["counted"]}
               for f in found[:TOP]]  # fmt: skip
        return {"monthly_saving_total": money(total_saving(found), 2), "count": len(found),
                "top": top}  # fmt: skip

    def _anomalies(self, win: Window, notes: list[str]) -> list[dict[str, Any]]:
        """The window's largest spend anomalies by team (`anomalies`), in time order."""
        try:
            report = self.anomalies.find(window=_span(win))
        except AifinopsError as error:
            notes.append(f"no anomalies checked: {error.message}")
            return []
        notes += [f"anomalies: {n}" for n in report.notes]
        largest = sorted(report.anomalies, key=lambda a: -abs(a.delta))[:TOP]
        out = []
        for a in sorted(largest, key=lambda a: (a.start_ms, a.scope)):
            top = a.contributors[0] if a.contributors else None
            out.append({"start": iso_z(a.start_ms), "end": iso_z(a.end_ms), "scope": a.scope,
                        "direction": a.direction, "severity": a.severity,
                        "actual": money(a.actual), "expected": money(a.expected),
                        "jump": money(a.delta),
                        "top_contributor": None if top is None else top.name,
                        "top_share": None if top is None or top.share is None
                        else float(top.share)})  # fmt: skip
        return out

    def _roi(self, notes: list[str]) -> dict[str, Any] | None:
        """What applied findings saved (`cost --roi`), in sum."""
        try:
            d = self.roi.report().to_dict()
        except AifinopsError as error:
            notes.append(f"no ROI: {error.message}")
            return None
        return {
            "realised_monthly": cents(d["realised_monthly"]),
            "confirmed_by_bill_monthly": cents(d["confirmed_by_bill_monthly"]),
            "projected_annual": cents(d["projected_annual"]),
            "potential_monthly": cents(d["potential_monthly"]),
            "fleet_monthly": cents(d["fleet_monthly"]),
            "saving_percent": cents(d["saving_percent"]),
            "payback_months": cents(d["payback_months"]),
            "applied": len(d["applied"]),
            "categories": [{"category": c["category"], "applied": c["applied"],
                            "realised_monthly": cents(c["realised_monthly"]),
                            "potential_monthly": cents(c["potential_monthly"])}
                           for c in d["categories"]],
        }  # fmt: skip


def _span(win: Window) -> str:
    return f"{win.start.isoformat()},{win.end.isoformat()}"


def _title(action: str) -> str:
    """A finding's action in one line: its first sentence, at most 120 characters."""
    first = action.split(". ")[0].strip()
    return first if len(first) <= 120 else first[:119] + "…"
