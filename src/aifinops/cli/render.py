"""Render cost reports for people (Rich tables) and scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.core.model import BUCKETS, IDLE, SHARED, UNALLOCATED, UNPRICED, CostReport, CostRow
from aifinops.core.money import ZERO, to_cents

if TYPE_CHECKING:
    from rich.console import Console

    from aifinops.core.reconcile import ReconciledReport
    from aifinops.demo import DemoResult


def money(value: Decimal) -> str:
    return f"{to_cents(value):,.2f}"


def hours(value: Decimal) -> str:
    return f"{value:,.1f}"


def cost_report(report: CostReport, fmt: str, console: Console) -> None:
    if fmt == "json":
        console.file.write(json.dumps(report.to_dict(), indent=2) + "\n")
    elif fmt == "csv":
        console.file.write(cost_csv(report))
    else:
        console.print(cost_table(report, detailed=fmt == "detailed"))
        if any(r.units is not None for r in report.rows):
            console.print(unit_table(report))
        _footnotes(report, console)


def unit_table(report: CostReport) -> Any:
    """What each model served and what a request and 1M tokens cost (DESIGN 2.10)."""
    from rich.table import Table

    table = Table(title="Unit costs", title_justify="left")
    for name in report.by:
        table.add_column(name.replace("_", " "))
    for head in ("requests", "prompt tok", "gen tok", "$/request", "$/1M tok", "$/1M prompt",
                 "$/1M gen", "$/GPU-h"):  # fmt: skip
        table.add_column(head, justify="right")

    def num(x: float | None, fmt: str = ",.4f") -> str:
        return "–" if x is None else format(x, fmt)

    for row in report.rows:
        if row.units is None:
            continue
        c = row.units.costs(row.total_cost, row.gpu_hours)
        table.add_row(
            *(row.key[d] for d in report.by),
            num(row.units.requests, ",.0f"),
            num(row.units.prompt_tokens, ",.0f"),
            num(row.units.generation_tokens, ",.0f"),
            num(c["cost_per_request"], ",.6f"),
            num(c["cost_per_1m_tokens"], ",.2f"),
            num(c["cost_per_1m_prompt_tokens"], ",.2f"),
            num(c["cost_per_1m_generation_tokens"], ",.2f"),
            num(c["cost_per_gpu_hour"], ",.2f"),
        )
    return table


def cost_csv(report: CostReport) -> str:
    buf = io.StringIO()
    fields = [
        "start",
        "end",
        *report.by,
        "gpu_hours",
        "gpu_cost",
        "cpu_cost",
        "ram_cost",
        "idle_cost",
        "total_cost",
        "gpu_efficiency",
        "efficiency_signal",
        "waste_cost",
    ]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        flat: dict[str, Any] = {**row.to_dict(), **row.key}
        flat.pop("key")
        writer.writerow({k: flat.get(k) for k in fields})
    return buf.getvalue()


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


def reconciled_report(report: ReconciledReport, fmt: str, console: Console) -> None:
    """`cost --reconciled`: list price next to the bill, per group; other billed spend."""
    if fmt == "json":
        console.file.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    if fmt == "csv":
        buf = io.StringIO()
        fields = [*report.by, "list_cost", "billed_cost", "difference", "unbilled_cost"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in report.rows:
            flat = row.to_dict()
            writer.writerow({**flat.pop("key"), **flat})
        console.file.write(buf.getvalue())
        return
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
            if u.instance_type:
                line = f'prices: {{instance_types: {{"{u.instance_type}": <USD per node-hour>}}}}'
            else:
                line = f'prices: {{gpu_models: {{"{u.gpu_model}": <USD per GPU-hour>}}}}'
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
        f"\nNext: aifinops --db {result.db} --config {result.config} cost "
        "--by team,project --format detailed"
    )
