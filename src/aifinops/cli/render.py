"""Render what a command returns: Rich tables for people, JSON and CSV for scripts.

One renderer per `--format` name, registered in `RENDERERS`; `emit` is the one entry point.
A command's result becomes a `View` first: plain rows under named columns, or a report that
brings its own table layout (cost, reconciled cost), so JSON and CSV are written in one place
each whatever the command.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial, singledispatch
from typing import TYPE_CHECKING, Any

from aifinops.core.model import BUCKETS, IDLE, SHARED, UNALLOCATED, UNPRICED, CostReport, CostRow
from aifinops.core.money import ZERO, plain, to_cents
from aifinops.core.pricing import price_hint
from aifinops.core.reconcile import ReconciledReport
from aifinops.core.roi import RoiReport
from aifinops.outputs.csv_cells import csv_text

if TYPE_CHECKING:
    from rich.console import Console

    from aifinops.demo.run import DemoResult

Layout = Callable[["Console", bool], None]  # prints a table of its own; bool: detailed


@dataclass(frozen=True)
class View:
    """One command's output in every format's terms: `doc` is what JSON writes, `rows` under
    `columns` what CSV and the plain table show; `summary` lines go above a table; `layout`,
    where set, prints the table instead of the plain one."""

    doc: Any
    rows: Sequence[dict[str, Any]]
    columns: Sequence[str]
    title: str = ""
    summary: Sequence[str] = ()
    layout: Layout | None = None


Renderer = Callable[[View, "Console"], None]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register a renderer under the `--format` name that asks for it."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


def emit(
    data: Any,
    fmt: str,
    console: Console,
    *,
    title: str = "",
    columns: Sequence[str] = (),
    doc: Any = None,
    summary: Sequence[str] = (),
) -> None:
    """Write `data` (rows as dicts under `columns`, or a report) in the format named `fmt`.
    `doc` replaces what JSON writes; `summary` lines are shown above a table."""
    shown = view(data, title, tuple(columns))
    if doc is not None:
        shown = replace(shown, doc=doc)
    if summary:
        shown = replace(shown, summary=tuple(summary))
    RENDERERS[str(fmt)](shown, console)


@singledispatch
def view(data: Any, title: str, columns: tuple[str, ...]) -> View:
    """Plain rows: JSON writes them as they are."""
    return View(doc=data, rows=data, columns=columns, title=title)


@view.register
def _cost_view(report: CostReport, title: str, columns: tuple[str, ...]) -> View:
    fields, rows = report.table()
    return View(report.to_dict(), rows, fields, layout=partial(_cost_layout, report))


@view.register
def _reconciled_view(report: ReconciledReport, title: str, columns: tuple[str, ...]) -> View:
    fields = (*report.by, "list_cost", "billed_cost", "difference", "unbilled_cost")
    rows = []
    for row in report.rows:
        flat = row.to_dict()
        rows.append({**flat.pop("key"), **flat})
    return View(report.to_dict(), rows, fields, layout=partial(_reconciled_layout, report))


class RoiDoc(dict[str, Any]):
    """An ROI report as JSON has it (a server's answer to /api/v1/roi)."""


@view.register
def _roi_report_view(report: RoiReport, title: str, columns: tuple[str, ...]) -> View:
    return _roi_view(RoiDoc(report.to_dict()), title, columns)


@view.register
def _roi_view(doc: RoiDoc, title: str, columns: tuple[str, ...]) -> View:
    fields = ("category", "applied", "realised_monthly", "confirmed_by_bill_monthly",
              "projected_annual", "potential_monthly")  # fmt: skip
    return View(dict(doc), doc["categories"], fields, layout=partial(_roi_layout, doc))


# -- the formats ----------------------------------------------------------------------------


@renderer("json")
def write_json(shown: View, console: Console) -> None:
    console.file.write(json_text(shown.doc) + "\n")


@renderer("csv")
def write_csv(shown: View, console: Console) -> None:
    rows = ({c: _joined(r.get(c)) for c in shown.columns} for r in shown.rows)
    console.file.write(csv_text(shown.columns, rows))


def json_text(value: Any, indent: int = 2, level: int = 0) -> str:
    """JSON as `json.dumps(value, indent=2)` writes it, but with every number (float or
    Decimal) in plain decimals: `0.000001`, never `1e-06`."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value)
    if isinstance(value, float | Decimal) and not (
        value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    ):
        return json.dumps(float(value))  # NaN, Infinity: as json.dumps writes them
    if isinstance(value, int | float | Decimal):
        return plain(value)
    inner = "\n" + " " * (indent * (level + 1))
    outer = "\n" + " " * (indent * level)
    if isinstance(value, dict):
        items = [f"{json.dumps(k if isinstance(k, str) else str(k))}: "
                 f"{json_text(v, indent, level + 1)}" for k, v in value.items()]  # fmt: skip
        return "{" + inner + ("," + inner).join(items) + outer + "}" if items else "{}"
    if isinstance(value, list | tuple):
        parts = [json_text(v, indent, level + 1) for v in value]
        return "[" + inner + ("," + inner).join(parts) + outer + "]" if parts else "[]"
    return json.dumps(value)  # what json cannot write raises as json.dumps does


@renderer("table")
def show_table(shown: View, console: Console) -> None:
    _show(shown, console, detailed=False)


@renderer("detailed")
def show_detailed(shown: View, console: Console) -> None:
    _show(shown, console, detailed=True)


def _show(shown: View, console: Console, detailed: bool) -> None:
    for line in shown.summary:
        console.print(line)
    if shown.layout is not None:
        shown.layout(console, detailed)
        return
    from rich.table import Table

    table = Table(title=shown.title, title_justify="left")
    for c in shown.columns:
        table.add_column(c.replace("_", " "))
    for r in shown.rows:
        table.add_row(*("–" if r.get(c) is None else str(_joined(r[c])) for c in shown.columns))
    console.print(table)


def _joined(value: Any) -> Any:
    """A list shows as one comma-separated cell in a table or CSV (JSON keeps the list)."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else value


# -- cost reports ---------------------------------------------------------------------------


def money(value: Decimal) -> str:
    return f"{to_cents(value):,.2f}"


def hours(value: Decimal) -> str:
    return f"{value:,.1f}"


def _cost_layout(report: CostReport, console: Console, detailed: bool) -> None:
    console.print(cost_table(report, detailed=detailed))
    if any(r.units is not None for r in report.rows):
        console.print(unit_table(report))
    _footnotes(report, console)


def unit_table(report: CostReport) -> Any:
    """What each model (or queue) served and what a request, 1M tokens, a job and a minute of
    job processing cost (DESIGN 2.10)."""
    from rich.table import Table

    table = Table(title="Unit costs", title_justify="left")
    for name in report.by:
        table.add_column(name.replace("_", " "))
    counted = [r.units for r in report.rows if r.units is not None]
    # job columns where jobs were counted; the serving ones where anything else was
    jobs = any(u.jobs or u.processing_seconds for u in counted)
    serving = not jobs or any(u.requests or u.prompt_tokens or u.generation_tokens
                              for u in counted)  # fmt: skip
    heads: tuple[str, ...] = ("requests", "prompt tok", "gen tok", "$/request", "$/1M tok",
                              "$/1M prompt", "$/1M gen") if serving else ()  # fmt: skip
    heads += ("jobs", "proc min", "$/job", "$/min") if jobs else ()
    for head in (*heads, "$/GPU-h"):
        table.add_column(head, justify="right")

    def num(x: float | None, fmt: str = ",.4f") -> str:
        return "–" if x is None else format(x, fmt)

    for row in report.rows:
        if row.units is None:
            continue
        u, c = row.units, row.units.costs(row.total_cost, row.gpu_hours)
        cells = [num(u.requests, ",.0f"), num(u.prompt_tokens, ",.0f"),
                 num(u.generation_tokens, ",.0f"), num(c["cost_per_request"], ",.6f"),
                 num(c["cost_per_1m_tokens"], ",.2f"), num(c["cost_per_1m_prompt_tokens"], ",.2f"),
                 num(c["cost_per_1m_generation_tokens"], ",.2f")] if serving else []  # fmt: skip
        if jobs:
            cells += [num(u.jobs, ",.1f"), num(u.processing_seconds / 60, ",.1f"),
                      num(c["cost_per_job"], ",.6f"),
                      num(c["cost_per_processing_minute"], ",.6f")]  # fmt: skip
        table.add_row(*(row.key[d] for d in report.by), *cells,
                      num(c["cost_per_gpu_hour"], ",.2f"))  # fmt: skip
    return table


def cost_table(report: CostReport, detailed: bool = False) -> Any:
    from rich.table import Table

    w = report.window
    title = (
        f"GPU cost by {', '.join(d.replace('_', '-') for d in report.by) or 'nothing'}  "
        f"{w.start:%Y-%m-%d %H:%M} → {w.end:%Y-%m-%d %H:%M} UTC  ({report.currency})"
    )
    table = Table(title=title, title_justify="left", show_footer=True)
    per_step = report.step is not None
    if per_step:
        table.add_column("step start", footer="")
    for i, dim in enumerate(report.by):
        table.add_column(dim.replace("_", "-"), footer="total" if i == 0 else "")
    totals = {
        k: sum((getattr(r, k) for r in report.rows), ZERO)
        for k in (
            "gpu_hours",
            "gpu_cost",
            "cpu_cost",
            "ram_cost",
            "idle_cost",
            "total_cost",
            "waste_cost",
        )
    }
    table.add_column("GPU-h", justify="right", footer=hours(totals["gpu_hours"]))
    table.add_column("GPU $", justify="right", footer=money(totals["gpu_cost"]))
    table.add_column("CPU $", justify="right", footer=money(totals["cpu_cost"]))
    table.add_column("RAM $", justify="right", footer=money(totals["ram_cost"]))
    if detailed:
        table.add_column("idle in $", justify="right", footer=money(totals["idle_cost"]))
    table.add_column("total $", justify="right", footer=money(totals["total_cost"]))
    table.add_column("GPU eff.", justify="right", footer="")
    table.add_column("waste $", justify="right", footer=money(totals["waste_cost"]))
    if detailed:
        table.add_column("busy GPU-h", justify="right", footer="")
        table.add_column("utilisation signal", footer="")
    for row in report.rows:
        cells = [row.start or ""] if per_step else []
        cells += [_key_cell(v) for v in row.key.values()]
        cells += [
            hours(row.gpu_hours),
            money(row.gpu_cost),
            money(row.cpu_cost),
            money(row.ram_cost),
        ]
        if detailed:
            cells.append(money(row.idle_cost))
        eff = row.gpu_efficiency
        cells += [
            money(row.total_cost),
            "–" if eff is None else f"{eff:.0%}",
            money(row.waste_cost),
        ]
        if detailed:
            cells += [hours(row.used_gpu_hours), ", ".join(row.efficiency_signals)]
        table.add_row(*cells)
    return table


def _reconciled_layout(report: ReconciledReport, console: Console, detailed: bool) -> None:
    """`cost --reconciled`: list price next to the bill, per group; other billed spend."""
    from rich.table import Table

    w = report.window
    table = Table(
        title=f"GPU cost reconciled with the bill, by {', '.join(report.by) or 'nothing'}  "
        f"{w.start:%Y-%m-%d %H:%M} → {w.end:%Y-%m-%d %H:%M} UTC  ({report.currency})",
        title_justify="left",
        show_footer=True,
    )
    for i, dim in enumerate(report.by):
        table.add_column(dim.replace("_", "-"), footer="total" if i == 0 else "")
    for name, head in (
        ("list_cost", "list $"),
        ("billed_cost", "billed $"),
        ("difference", "difference $"),
        ("unbilled_cost", "not in bill $"),
    ):
        table.add_column(head, justify="right", footer=money(report.total(name)))
    for row in report.rows:
        table.add_row(
            *(_key_cell(v) for v in row.key.values()),
            money(row.list_cost),
            money(row.billed_cost),
            money(row.difference),
            money(row.unbilled_cost),
        )
    console.print(table)
    if report.other:
        other = Table(
            title="Other billed spend in the window (not a node of the allocation)",
            title_justify="left",
        )
        for head in ("provider", "service category", "currency"):
            other.add_column(head)
        other.add_column("billed", justify="right")
        other.add_column("effective", justify="right")
        for o in report.other:
            other.add_row(
                o.provider,
                o.service_category,
                o.currency,
                money(o.billed_cost),
                money(o.effective_cost),
            )
        console.print(other)
    console.print(
        "billed = the bill's EffectiveCost (spot, savings plans, reservations and "
        "credits included), spread over each node's rows"
    )
    for note in report.notes:
        console.print(f"note: {note}", markup=False)


def _key_cell(value: str) -> str:
    return f"[dim]{value}[/dim]" if value in BUCKETS else value


def _footnotes(report: CostReport, console: Console) -> None:
    console.print(
        f"asset cost of the priced nodes in the window: "
        f"{money(report.asset_cost)} {report.currency}; rows sum to "
        f"{money(report.total_cost)}"
    )
    for note in report.notes:
        console.print(f"note: {note}")
    if report.unpriced:
        console.print(
            f"[yellow]{len(report.unpriced)} node(s) have no price[/]; their "
            "GPU-hours are in __unpriced__ at no cost. Add to the config file:"
        )
        for u in report.unpriced:
            line = price_hint(u.instance_type, u.gpu_model)
            console.print(
                f"  {u.node} ({u.reason}; {hours(u.gpu_hours)} GPU-h): {line}", markup=False
            )


def _bucket(report: CostReport, name: str) -> CostRow | None:
    return next((r for r in report.rows if r.is_bucket(name)), None)


def demo(result: DemoResult, console: Console) -> None:
    console.print(
        f"[bold]aifinops demo[/] — built [cyan]{result.db}[/] in {result.seconds:.1f} s: "
        f"{result.nodes} nodes, {result.gpus} GPUs, {result.workloads} workloads, "
        f"{result.samples:,} GPU samples (one node is the real H100 capture, "
        f"{result.capture.rows} one-second samples)"
    )
    console.print(cost_table(result.by_team))
    console.print(cost_table(result.by_model))
    if any(r.units is not None for r in result.by_model.rows):  # the capture's model servers
        console.print(unit_table(result.by_model))
    if result.budgets:
        console.print(
            f"[bold]Budgets[/] at {result.window.end:%Y-%m-%d %H:%M} UTC "
            "(budget status; the config beside the store declares them)"
        )
        for b in result.budgets:
            p = b["projectedPeriodSpend"]
            console.print(
                f"  {b['name']}: {b['budgetStatus']}, {money(Decimal(b['currentSpend']))} of "
                f"{money(Decimal(b['limit']))} {b['currency']} ({b['percentageUsed']}%), "
                f"projected {money(Decimal(p['amount']))} for the period",
                markup=False,
            )
    if result.forecast and result.forecast["total"]:
        fc = result.forecast["total"]
        month = fc["periods"][0]
        low, high = month["interval80"]
        console.print(
            f"[bold]Forecast[/] (aifinops forecast --period-end): {month['start'][:7]} "
            f"{money(Decimal(month['forecast']))} {result.forecast['currency']}, 80 % "
            f"interval {money(Decimal(low))} – {money(Decimal(high))}; "
            f"spent so far {money(Decimal(month['actual']))}"
        )
        console.print(f"  method: {fc['method']}" + (f" ({fc['note']})" if fc["note"] else ""),
                      markup=False)  # fmt: skip
    if result.findings:
        from aifinops.core.recommend import total_saving

        top: dict[str, dict[str, Any]] = {}  # the largest of each rule
        for f in result.findings:
            if f["counted"]:
                top.setdefault(f["rule"], f)
        console.print(
            f"[bold]Recommendations[/] (aifinops optimize; the week up to the newest sample): "
            f"{len(result.findings)} open, {money(total_saving(result.findings))} "
            f"{result.findings[0]['currency']} a month, overlaps counted once"
        )
        for f in list(top.values())[:4]:
            action = re.sub(r" \([^()]*\)", "", f["action"], count=1)  # the names it lists
            saving = money(Decimal(f["monthly_saving"]))
            console.print(f"  {f['rule']} {saving}/month (confidence {f['confidence']}): "
                          f"{action[:130]}", markup=False)  # fmt: skip
    team = result.by_team
    idle = _bucket(team, IDLE)
    waste = sum((r.waste_cost for r in team.rows), ZERO)
    console.print("[bold]Idle and waste[/]")
    if idle:
        console.print(
            f"  idle capacity (held by no one): {hours(idle.gpu_hours)} GPU-h, "
            f"{money(idle.total_cost)} {team.currency}"
        )
    console.print(f"  waste (held but not used): {money(waste)} {team.currency}")
    worst = sorted(
        (
            r
            for r in result.by_node.rows
            if not any(r.is_bucket(b) for b in BUCKETS) and r.gpu_efficiency is not None
        ),
        key=lambda r: r.gpu_efficiency or 0,
    )[:3]
    for r in worst:
        console.print(
            f"  least efficient node: {r.key['node']} — "
            f"{r.gpu_efficiency:.0%} busy, {money(r.waste_cost)} wasted"
        )
    console.print("[bold]Unallocated, shared and unpriced[/]")
    for name, text in ((UNALLOCATED, "no team label"), (SHARED, "overhead namespaces")):
        row = _bucket(team, name)
        if row:
            console.print(
                f"  {name} ({text}): {money(row.total_cost)} {team.currency}, "
                f"{hours(row.gpu_hours)} GPU-h"
            )
    row = _bucket(team, UNPRICED)
    if row:
        console.print(f"  {UNPRICED}: {hours(row.gpu_hours)} GPU-h with no price")
    _footnotes(team, console)
    console.print(
        f"\nNext: aifinops --db {shlex.quote(result.db)} --config {result.config} cost "
        "--by team,project --format detailed\n"
        f"  or the dashboard: aifinops --db {shlex.quote(result.db)} --config {result.config} "
        "serve, "
        "then open http://127.0.0.1:8080/"
    )


def _roi_layout(doc: dict[str, Any], console: Console, detailed: bool) -> None:
    """`cost --roi`: savings by category, the totals, and each applied finding."""
    from rich.table import Table

    def m(x: str | None) -> str:
        return "–" if x is None else money(Decimal(x))

    cur = doc["currency"]
    table = Table(title=f"Savings by category ({cur} a month)", title_justify="left",
                  show_footer=True)  # fmt: skip
    heads = (("category", "category", "total"), ("applied", "applied", ""),
             ("realised_monthly", "realised", m(doc["realised_monthly"])),
             ("confirmed_by_bill_monthly", "confirmed by bill",
              m(doc["confirmed_by_bill_monthly"])),
             ("projected_annual", "a year", m(doc["projected_annual"])),
             ("potential_monthly", "open potential", m(doc["potential_monthly"])))  # fmt: skip
    for _, head, foot in heads:
        table.add_column(head, footer=foot, justify="left" if head == "category" else "right")
    for c in doc["categories"]:
        table.add_row(c["category"], str(c["applied"]),
                      *(m(c[k]) for k, _, _ in heads[2:]))  # fmt: skip
    console.print(table)
    pct = doc["saving_percent"]
    console.print(
        f"baseline {m(doc['baseline_monthly'])} {cur} a month (the fleet's run-rate "
        f"{m(doc['fleet_monthly'])} + what was saved); saved "
        f"{'–' if pct is None else pct + ' %'} of it; projected a year "
        f"{m(doc['projected_annual'])}",
        markup=False,
    )
    payback, investment = doc["payback_months"], Decimal(doc["investment"])
    if investment <= 0:
        console.print("payback: no investment given (roi.investment, or --investment)",
                      markup=False)  # fmt: skip
    else:
        console.print(
            f"payback of {m(doc['investment'])} {cur} (running cost "
            f"{m(doc['monthly_cost'])} a month): "
            + ("never at this saving" if payback is None else f"{payback} months"),
            markup=False,
        )
    if doc["applied"]:
        found = Table(title="Applied findings, measured before and after", title_justify="left")
        for head in ("id", "category", "state", "basis", "expected", "realised", "notes"):
            found.add_column(head)
        for a in doc["applied"]:
            notes = "; ".join(a["notes"])
            found.add_row(a["id"], a["category"], a["state"], a["basis"],
                          m(a["expected_monthly"]), m(a["realised_monthly"]),
                          notes if detailed else notes[:80])  # fmt: skip
        console.print(found)
    for note in doc["notes"]:
        console.print(f"note: {note}", markup=False)
