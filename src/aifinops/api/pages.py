"""The dashboard's pages as data. Each page is one dict built from service calls: its
template renders it at the page's path, and its JSON twin (`/teams.json` beside `/teams`,
`/index.json` for the overview at `/`) serves the same dict, so what a person sees and what
a script reads cannot differ.

Filters live in the URL (`View`): the window, the dimension, a team, the table's sort,
order and page. Windows are read as the API reads them (`7d`, `month`, `lastweek`,
`START,END`), but relative to the newest data rather than the clock: a store whose
collector stopped (or the demo's week) shows its last week, not an empty one, and the
page says which instant it is as of. Tables are sorted and paged here, not in the browser:
the twin holds exactly the rows the page shows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aifinops.api.windows import as_text, parse_window
from aifinops.core.model import IDLE
from aifinops.core.money import ZERO, quantize
from aifinops.core.windows import Window, align_up, from_ms, iso_z
from aifinops.errors import AifinopsError, UsageError

# (name, path, title): the navigation, in order
PAGES = (
    ("index", "/", "Overview"),
    ("costs", "/costs", "Cost over time"),
    ("gpus", "/gpus", "GPU utilisation"),
    ("teams", "/teams", "Efficiency and waste"),
    ("units", "/units", "Unit costs"),
    ("budgets", "/budgets", "Budgets"),
    ("recommendations", "/recommendations", "Recommendations"),
    ("bills", "/bills", "Bills vs allocation"),
    ("sources", "/sources", "Sources"),
)
TITLES = {name: title for name, _, title in PAGES}
COST_DIMENSIONS = ("team", "project", "model", "namespace", "environment", "cost_center",
                   "gpu_model", "node")  # fmt: skip
BILL_DIMENSIONS = ("team", "project", "namespace", "node", "gpu_model")
STATUSES = ("open", "dismissed", "applied", "resolved")
SIZES = (10, 25, 50, 100)
CHART_SERIES = 8  # the largest keys drawn; the rest summed as "other"


@dataclass(frozen=True)
class View:
    """A page's filters, as the URL gives them."""

    window: str | None = None
    by: str = "team"
    team: str | None = None
    sort: str | None = None
    order: str = "desc"
    page: int = 1
    size: int = 25
    status: str = "open"

    @classmethod
    def read(cls, params: dict[str, str]) -> View:
        def number(name: str, default: int, low: int, high: int) -> int:
            text = params.get(name) or ""
            if not text:
                return default
            if not text.isdigit() or not low <= int(text) <= high:
                raise UsageError(f"{name} must be a whole number from {low} to {high}",
                                 where=name)  # fmt: skip
            return int(text)

        order = params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise UsageError(f"unknown order {order!r}", where="order", hint="asc or desc")
        status = params.get("status") or "open"
        if status not in STATUSES:
            raise UsageError(f"unknown status {status!r}", where="status",
                             hint=", ".join(STATUSES))  # fmt: skip
        size = number("size", 25, 1, 500)
        return cls(
            window=(params.get("window") or "").strip() or None,
            by=(params.get("by") or "").strip() or "team",
            team=(params.get("team") or "").strip() or None,
            sort=(params.get("sort") or "").strip() or None,
            order=order,
            page=number("page", 1, 1, 1_000_000),
            size=size,
            status=status,
        )

    def query(self, **changes: Any) -> str:
        """This view's URL query with `changes`; defaults left out."""
        view = replace(self, **changes)
        default = View()
        parts = [f"{k}={_quote(str(v))}" for k, v in vars(view).items()
                 if v is not None and v != getattr(default, k)]  # fmt: skip
        return "?" + "&".join(parts) if parts else ""


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe=",:")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, money, hours, share, number, count, when


Cache = Callable[[Any, Callable[[], Any]], Any]  # (key, compute) -> answer


@dataclass
class Context:
    """What every page is built with: the service (read-only), the view, and the instant
    the pages are as of."""

    svc: Any
    view: View
    as_of: datetime
    window_text: str = "7d"
    notes: list[str] = field(default_factory=list)
    cache: Cache | None = None

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """An answer other views of the page reuse (a sort or a page of the budgets' table
        does not work the budgets out again), where the server keeps answers."""
        return self.cache(key, compute) if self.cache else compute()

    def window(self, default: str = "7d") -> Window:
        self.window_text = self.view.window or default
        return parse_window(self.window_text, self.as_of)

    def attempt(self, what: str, call: Callable[[], Any]) -> Any:
        """A part of a page that may fail for want of data: its answer, or None and a note
        that says why (the rest of the page still shows)."""
        try:
            return call()
        except AifinopsError as exc:
            self.notes.append(f"{what}: {exc}")
            return None


def as_of(extent: tuple[int, int] | None, now: datetime) -> datetime:
    """The instant the dashboard is as of: the end of the newest sample's hour, or now (to
    the minute) if that is earlier or the store holds no samples."""
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    if extent is None:
        return now
    return min(now, align_up(from_ms(extent[1] + 1), timedelta(hours=1)))


def build(name: str, svc: Any, view: View, at: datetime, cache: Cache | None = None
          ) -> dict[str, Any]:  # fmt: skip
    """Page `name`'s data for `view`, as of `at` (see `as_of`); `cache(key, compute)`
    keeps the answers that several views of a page share."""
    ctx = Context(svc, view, at, cache=cache)
    body = BUILDERS[name](ctx)
    return {
        "page": name,
        "title": TITLES[name],
        "as_of": ctx.as_of.isoformat().replace("+00:00", "Z"),
        "filters": {k: v for k, v in vars(view).items()},
        "window_text": ctx.window_text,
        **body,
        "notes": ctx.notes + body.get("notes", []),
    }


# -- helpers ---------------------------------------------------------------------------------
def money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(quantize(Decimal(str(value)), 6))


def table(rows: list[dict[str, Any]], columns: Sequence[Column], view: View,
          default_sort: str) -> dict[str, Any]:  # fmt: skip
    """The rows sorted (None last) and paged as the view asks."""
    keys = {c.key for c in columns}
    sort = view.sort if view.sort in keys else default_sort
    order = view.order if view.sort in keys else "desc"
    present = [r for r in rows if r.get(sort) is not None]
    missing = [r for r in rows if r.get(sort) is None]
    present.sort(key=lambda r: _sort_key(r[sort]), reverse=order == "desc")
    ordered = present + missing
    pages = max(1, math.ceil(len(ordered) / view.size))
    page = min(view.page, pages)
    start = (page - 1) * view.size
    return {
        "columns": [vars(c) for c in columns],
        "rows": ordered[start : start + view.size],
        "total": len(ordered),
        "page": page,
        "pages": pages,
        "size": view.size,
        "sort": sort,
        "order": order,
    }


def _sort_key(value: Any) -> Any:
    if isinstance(value, int | float | Decimal):
        return (0, float(value), "")
    return (1, 0.0, str(value).lower())


def _key_text(key: dict[str, str], dims: Sequence[str]) -> str:
    return " / ".join(str(key.get(d) or "") for d in dims)


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _step_for(win: Window, hourly_up_to: timedelta = timedelta(days=2)) -> str:
    return "1h" if win.end - win.start <= hourly_up_to else "1d"


# -- pages ----------------------------------------------------------------------------------
def overview(ctx: Context) -> dict[str, Any]:
    win = ctx.window("month")
    summary = ctx.attempt("summary", lambda: ctx.svc.summary(window=as_text(win), by=("team",)))
    chart = None
    if summary and summary.get("daily"):
        days = summary["daily"]
        chart = {"kind": "bars", "x": [_epoch(d["start"]) for d in days],
                 "series": [{"label": "spend", "values": [d["total_cost"] for d in days]}],
                 "unit": summary.get("currency", "")}  # fmt: skip
    budgets = (summary or {}).get("budgets") or []
    return {"summary": summary, "chart": chart, "budgets": budgets}


def costs(ctx: Context) -> dict[str, Any]:
    view = ctx.view
    if view.by not in COST_DIMENSIONS:
        raise UsageError(f"cannot show cost by {view.by!r}", where="by",
                         hint=", ".join(COST_DIMENSIONS))  # fmt: skip
    win = ctx.window()
    step = _step_for(win)
    # the table is what `cost` answers for the window; the chart its steps (CPU, RAM and
    # idle are shared within each step, so a key's steps need not add up to its total)
    report = ctx.svc.cost(window=as_text(win), by=(view.by,), team=view.team)
    stepped = ctx.svc.cost(window=as_text(win), by=(view.by,), step=step, team=view.team)
    grand = report.total_cost
    rows = []
    for r in report.rows:
        share = float(r.total_cost / grand) if grand else None
        rows.append({"key": _key_text(r.key, (view.by,)), "total_cost": money(r.total_cost),
                     "gpu_hours": money(r.gpu_hours), "waste_cost": money(r.waste_cost),
                     "share": None if share is None else round(share, 4)})  # fmt: skip
    totals: dict[str, Decimal] = {}
    per_step: dict[str, dict[str, Decimal]] = {}
    for r in stepped.rows:
        name = _key_text(r.key, (view.by,))
        totals[name] = totals.get(name, ZERO) + r.total_cost
        cells = per_step.setdefault(str(r.start), {})
        cells[name] = cells.get(name, ZERO) + r.total_cost
    ranked = sorted(totals, key=lambda k: -totals[k])
    drawn, rest = ranked[:CHART_SERIES], ranked[CHART_SERIES:]
    steps = sorted(per_step)
    series = [{"label": k, "values": [money(per_step[s].get(k, ZERO)) for s in steps]}
              for k in drawn]  # fmt: skip
    if rest:
        series.append(
            {
                "label": f"other ({len(rest)})",
                "values": [
                    money(sum((per_step[s].get(k, ZERO) for k in rest), ZERO)) for s in steps
                ],
            }
        )
    columns = (
        Column("key", view.by),
        Column("total_cost", "cost", "money"),
        Column("share", "share", "share"),
        Column("gpu_hours", "GPU-hours", "hours"),
        Column("waste_cost", "waste", "money"),
    )
    return {
        "by": view.by,
        "dimensions": list(COST_DIMENSIONS),
        "step": step,
        "currency": report.currency,
        "total_cost": money(report.total_cost),
        "chart": {
            "kind": "stacked",
            "x": [_epoch(s) for s in steps],
            "series": series,
            "unit": report.currency,
        },
        "table": table(rows, columns, view, "total_cost"),
        "notes": list(report.notes),
    }


def gpus(ctx: Context) -> dict[str, Any]:
    win = ctx.window()
    span = win.end - win.start
    hourly, six_hourly = span <= timedelta(days=7), span <= timedelta(days=31)
    step = timedelta(hours=1 if hourly else 6 if six_hourly else 24)
    grid = ctx.svc.utilization_grid(win, step)
    rows = [{"node": g["node"], "gpu": g["gpu"], "gpu_model": g["gpu_model"],
             "sampled_hours": g["sampled_hours"], "utilization": g["utilization"]}
            for g in grid["gpus"]]  # fmt: skip
    columns = (
        Column("node", "node"),
        Column("gpu", "GPU"),
        Column("gpu_model", "model"),
        Column("sampled_hours", "sampled hours", "hours"),
        Column("utilization", "busy", "share"),
    )
    busy = [r["utilization"] for r in rows if r["utilization"] is not None]
    return {
        "step": f"{int(step.total_seconds() // 3600)}h",
        "gpu_count": len(rows),
        "mean_utilization": round(sum(busy) / len(busy), 4) if busy else None,
        "chart": {
            "kind": "heatmap",
            "x": [_epoch(s) for s in grid["steps"]],
            "rows": [
                g["gpu"] if str(g["gpu"]).startswith(g["node"]) else f"{g['node']} / {g['gpu']}"
                for g in grid["gpus"]
            ],
            "cells": [g["cells"] for g in grid["gpus"]],
        },
        "table": table(rows, columns, ctx.view, "utilization"),
    }


def teams(ctx: Context) -> dict[str, Any]:
    win = ctx.window()
    report = ctx.svc.cost(window=as_text(win), by=("team",), team=ctx.view.team)
    rows = []
    for r in report.rows:
        eff = r.gpu_efficiency
        rows.append({"team": r.key.get("team"), "gpu_hours": money(r.gpu_hours),
                     "used_gpu_hours": money(r.used_gpu_hours),
                     "gpu_efficiency": None if eff is None else round(float(eff), 4),
                     "idle_cost": money(_idle(r)), "waste_cost": money(r.waste_cost),
                     "total_cost": money(r.total_cost)})  # fmt: skip
    columns = (
        Column("team", "team"),
        Column("total_cost", "cost", "money"),
        Column("gpu_hours", "GPU-hours", "hours"),
        Column("used_gpu_hours", "used GPU-hours", "hours"),
        Column("gpu_efficiency", "efficiency", "share"),
        Column("waste_cost", "waste", "money"),
        Column("idle_cost", "idle", "money"),
    )
    ranked = sorted((r for r in rows if r["waste_cost"] or r["idle_cost"]),
                    key=lambda r: -(r["waste_cost"] + r["idle_cost"]))[:12]  # fmt: skip
    bars = [{"label": r["team"], "waste": r["waste_cost"], "idle": r["idle_cost"],
             "efficiency": r["gpu_efficiency"]} for r in ranked]  # fmt: skip
    top = max((b["waste"] + b["idle"] for b in bars), default=0.0)
    return {
        "currency": report.currency,
        "total_cost": money(report.total_cost),
        "waste_cost": money(sum((r.waste_cost for r in report.rows), ZERO)),
        "idle_cost": money(sum((_idle(r) for r in report.rows), ZERO)),
        "bars": bars,
        "bar_max": top,
        "table": table(rows, columns, ctx.view, "waste_cost"),
        "notes": list(report.notes),
    }


def _idle(row: Any) -> Decimal:
    """Idle in a row: all of the `__idle__` bucket, or what the idle policy shared into a
    team's row (nothing under `separate`, the default)."""
    return row.total_cost if row.is_bucket(IDLE) else row.idle_cost


def units(ctx: Context) -> dict[str, Any]:
    win = ctx.window()
    models = ctx.attempt("tokens", lambda: ctx.svc.cost(window=as_text(win), by=("model",),
                                                        unit="tokens"))  # fmt: skip
    rows = []
    for r in models.rows if models else []:
        if r.units is None or not (r.units.requests or r.units.prompt_tokens
                                   or r.units.generation_tokens):  # fmt: skip
            continue
        per = r.units.costs(r.total_cost, r.gpu_hours)
        rows.append({"model": r.key.get("model"), "requests": r.units.requests,
                     "tokens": r.units.prompt_tokens + r.units.generation_tokens,
                     "total_cost": money(r.total_cost),
                     "cost_per_1m_tokens": _round(per["cost_per_1m_tokens"]),
                     "cost_per_request": _round(per["cost_per_request"]),
                     "cost_per_gpu_hour": _round(per["cost_per_gpu_hour"])})  # fmt: skip
    jobs = ctx.attempt("jobs", lambda: ctx.svc.cost(window=as_text(win), by=("model",),
                                                    unit="jobs"))  # fmt: skip
    job_rows = []
    for r in jobs.rows if jobs else []:
        if r.units is None or not r.units.jobs:
            continue
        per = r.units.costs(r.total_cost, r.gpu_hours)
        job_rows.append({"queue": r.key.get("model"), "jobs": r.units.jobs,
                         "total_cost": money(r.total_cost),
                         "cost_per_job": _round(per["cost_per_job"]),
                         "cost_per_processing_minute": _round(
                             per["cost_per_processing_minute"])})  # fmt: skip
    token_cols = (
        Column("model", "model"),
        Column("requests", "requests", "count"),
        Column("tokens", "tokens", "count"),
        Column("total_cost", "cost", "money"),
        Column("cost_per_1m_tokens", "per 1M tokens", "money"),
        Column("cost_per_request", "per request", "money"),
        Column("cost_per_gpu_hour", "per GPU-hour", "money"),
    )
    job_cols = (
        Column("queue", "queue"),
        Column("jobs", "jobs", "count"),
        Column("total_cost", "cost", "money"),
        Column("cost_per_job", "per job", "money"),
        Column("cost_per_processing_minute", "per processing minute", "money"),
    )
    return {
        "currency": models.currency if models else None,
        "table": table(rows, token_cols, ctx.view, "cost_per_1m_tokens"),
        "jobs": table(job_rows, job_cols, replace(ctx.view, sort=None, page=1), "cost_per_job"),
    }


def _round(value: float | None, places: int = 6) -> float | None:
    return None if value is None else round(value, places)


def budgets(ctx: Context) -> dict[str, Any]:
    found = ctx.shared(("budget statuses", ctx.as_of),
                       lambda: ctx.svc.budget_statuses(at=ctx.as_of))  # fmt: skip
    statuses = [s.to_dict() for s in found]
    rows = []
    for s in statuses:
        projected = s["projectedPeriodSpend"]
        rows.append({"name": s["name"], "scope": s["scope"], "state": s["budgetStatus"],
                     "spend": float(s["currentSpend"]), "limit": float(s["limit"]),
                     "percent": float(s["percentageUsed"]),
                     "projected": float(projected["amount"]),
                     "projected_high95": float(projected["interval95"][1]),
                     "method": projected["method"], "period_end": s["period"]["end"],
                     "enforcement": s["enforcement"],
                     "alerts_fired": ", ".join(s["alertsFired"]) or None})  # fmt: skip
    alerts = ctx.svc.budget_alerts()
    columns = (
        Column("name", "budget"),
        Column("scope", "scope"),
        Column("state", "status"),
        Column("spend", "spend", "money"),
        Column("limit", "limit", "money"),
        Column("percent", "used %", "number"),
        Column("projected", "projected", "money"),
        Column("projected_high95", "projected (95 % high)", "money"),
        Column("alerts_fired", "alerts firing"),
    )
    alert_cols = (
        Column("budget", "budget"),
        Column("period", "period"),
        Column("alert", "alert"),
        Column("severity", "severity"),
        Column("state", "state"),
        Column("fired_at", "fired", "when"),
        Column("resolved_at", "resolved", "when"),
    )
    alert_rows = [{c.key: a.get(c.key) for c in alert_cols} for a in alerts]
    return {
        "count": len(rows),
        "bars": rows,
        "table": table(rows, columns, ctx.view, "percent"),
        "alerts": table(alert_rows, alert_cols, replace(ctx.view, sort=None, page=1), "fired_at"),
    }


def recommendations(ctx: Context) -> dict[str, Any]:
    from aifinops.core.recommend import total_saving

    found = ctx.svc.recommendations(status=ctx.view.status, team=ctx.view.team)
    rows = [{"id": f["id"], "rule": f["rule"], "severity": f["severity"],
             "team": (f.get("scope") or {}).get("team"), "action": f["action"],
             "monthly_saving": float(f["monthly_saving"]), "confidence": float(f["confidence"]),
             "counted": f.get("counted"), "status": f["status"], "reason": f.get("reason")}
            for f in found]  # fmt: skip
    columns = (
        Column("rule", "rule"),
        Column("team", "team"),
        Column("action", "what to do"),
        Column("monthly_saving", "saving a month", "money"),
        Column("confidence", "confidence", "number"),
        Column("severity", "severity"),
        Column("status", "status"),
    )
    if ctx.view.status == "dismissed":
        columns += (Column("reason", "why dismissed"),)
    return {
        "status": ctx.view.status,
        "statuses": list(STATUSES),
        "count": len(rows),
        "monthly_saving_total": float(total_saving(found)),
        "currency": found[0]["currency"] if found else None,
        "table": table(rows, columns, ctx.view, "monthly_saving"),
    }


def bills(ctx: Context) -> dict[str, Any]:
    view = ctx.view
    if view.by not in BILL_DIMENSIONS:
        raise UsageError(f"cannot reconcile by {view.by!r}", where="by",
                         hint=", ".join(BILL_DIMENSIONS))  # fmt: skip
    win = ctx.window()
    report = ctx.svc.reconcile(window=as_text(win), by=(view.by,)).to_dict()
    rows = [{"key": _key_text(r["key"], (view.by,)), "list_cost": r["list_cost"],
             "billed_cost": r["billed_cost"], "difference": r["difference"],
             "unbilled_cost": r["unbilled_cost"]} for r in report["rows"]]  # fmt: skip
    nodes = [{"node": n["node"], "resource_id": n["resource_id"], "list_cost": n["list_cost"],
              "billed_cost": n["billed_cost"], "factor": n["factor"]}
             for n in report["nodes"]]  # fmt: skip
    columns = (
        Column("key", view.by),
        Column("list_cost", "allocated (list)", "money"),
        Column("billed_cost", "allocated (billed)", "money"),
        Column("difference", "difference", "money"),
        Column("unbilled_cost", "not in a bill", "money"),
    )
    node_cols = (
        Column("node", "node"),
        Column("resource_id", "bill resource"),
        Column("list_cost", "list", "money"),
        Column("billed_cost", "billed", "money"),
        Column("factor", "billed / list", "number"),
    )
    summary = ctx.svc.bills_summary()
    return {
        "by": view.by,
        "dimensions": list(BILL_DIMENSIONS),
        "currency": report["currency"],
        "list_cost": report["list_cost"],
        "billed_cost": report["billed_cost"],
        "difference": report["difference"],
        "unbilled_cost": report["unbilled_cost"],
        "other_spend": report["other_spend"],
        "bills": summary,
        "table": table(rows, columns, view, "billed_cost"),
        "nodes": table(nodes, node_cols, replace(view, sort=None, page=1), "list_cost"),
        "notes": report["notes"],
    }


def sources(ctx: Context) -> dict[str, Any]:
    status = ctx.svc.sources_status()
    extent = ctx.svc.data_extent()
    rows = [{"name": s.get("name"), "kind": s.get("kind"), "state": s.get("state"),
             "stale": bool(s.get("stale")), "last_success": s.get("last_ok"),
             "last_error": s.get("last_error"), "rows": s.get("rows")}
            for s in status]  # fmt: skip
    columns = (
        Column("name", "source"),
        Column("kind", "kind"),
        Column("state", "state"),
        Column("last_success", "last success", "when"),
        Column("rows", "rows", "count"),
        Column("last_error", "last error"),
    )
    missing = ctx.svc.missing_prices()
    return {
        "first_sample": iso_z(extent[0]) if extent else None,
        "newest_sample": iso_z(extent[1]) if extent else None,
        "table": table(rows, columns, ctx.view, "name"),
        "missing_prices": missing,
        "price_notes": list(ctx.svc.price_notes),
    }


BUILDERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "index": overview,
    "costs": costs,
    "gpus": gpus,
    "teams": teams,
    "units": units,
    "budgets": budgets,
    "recommendations": recommendations,
    "bills": bills,
    "sources": sources,
}
