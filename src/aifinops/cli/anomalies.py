"""`aifinops anomalies`: the days (or hours) whose spend, GPU-hours, cost per 1M tokens or
idle share left their expected band, each with the drill-down that explains it; `check`
alerts each new one once through the configured channels."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aifinops.service import Service

anomalies_app = typer.Typer(
    rich_markup_mode=None,
    help="Anomalies: spend, GPU-hours, cost per 1M tokens or idle share out of its band.",
)
_hooks: dict[str, Callable[..., Any]] = {}
FORMATS = ("table", "json", "csv")
FLAT = ("id", "start", "scope", "level", "path", "actual", "expected", "delta", "share",
        "tags", "volume", "price")  # fmt: skip


def _svc(read_only: bool = False) -> Service:
    return _hooks["service"](read_only)  # type: ignore[no-any-return]


@anomalies_app.callback(invoke_without_command=True)
def anomalies(
    ctx: typer.Context,
    window: Annotated[str | None, typer.Option(help="START,END (ISO 8601).")] = None,
    last: Annotated[str | None, typer.Option(help="A window ending now, e.g. 7d.")] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="The scopes: team (default), model, namespace, ...; with --metric "
            "billed: provider (default), account, sub_account or service."
        ),
    ] = None,
    metric: Annotated[
        str,
        typer.Option(
            help="spend, gpu_hours, cost_per_1m_tokens, idle_share (the allocation) "
            "or billed (the stored bills' EffectiveCost per day)."
        ),
    ] = "spend",
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Each complete step of the window (default: the 7 days up to the newest sample;
    hourly steps for 2 days or less) whose value left its band, with its contributors
    (scope -> workload -> node; billed: scope -> sku -> resource) and each one's part of
    the jump."""
    if ctx.invoked_subcommand is not None:
        return
    from aifinops.errors import UsageError

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", where="--format", hint=", ".join(FORMATS))
    report = _svc(True).anomalies(window=window, last=last, by=by, metric=metric)
    if fmt == "json":
        _hooks["emit"](report.to_dict(), "json")
        return
    if fmt == "csv":
        _hooks["emit"](flatten(report.to_dict()), "csv", columns=FLAT)
        return
    columns, rows = report.table()
    doc = report.to_dict()
    lines = [f"{len(report.anomalies)} anomal{'y' if len(report.anomalies) == 1 else 'ies'} "
             f"of {metric} by {report.by}, {report.step} steps "
             f"(sensitivity {report.thresholds.sensitivity:g}, at least "
             f"{report.thresholds.min_amount} and {report.thresholds.min_relative:%} of "
             "expected)"]  # fmt: skip
    for a in doc["anomalies"]:
        lines.append(f"{a['start']} {a['scope']}: {a['direction']} {a['delta']} "
                     f"(expected {a['expected']}, {a['reference']})")  # fmt: skip
        lines += _tree(a["contributors"], "  ")
        lines += [f"  bill restated: {r}" for r in a.get("restated", [])]
    lines += [f"note: {n}" for n in report.notes]
    _hooks["emit"](rows, "table", title=f"Anomalies {doc['window']['start']} → "
                   f"{doc['window']['end']}", columns=columns, summary=lines)  # fmt: skip


def _tree(parts: list[dict[str, Any]], indent: str, depth: int = 0) -> list[str]:
    out = []
    for c in parts[:3]:
        share = f"{float(c['share']):.0%}" if c["share"] is not None else "-"
        tags = f" [{', '.join(c['tags'])}]" if c["tags"] else ""
        out.append(f"{indent}{c['level']} {c['name']}: {c['delta']} ({share}){tags}")
        out += _tree(c.get("children", []), indent + "  ", depth + 1)
    return out


def flatten(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per anomaly (level = the scope's) and per contributor, path joined by ' > '."""
    rows = []

    def walk(a: dict[str, Any], parts: list[dict[str, Any]], path: list[str]) -> None:
        for c in parts:
            here = [*path, c["name"]]
            rows.append({"id": a["id"], "start": a["start"], "scope": a["scope"],
                         "level": c["level"], "path": " > ".join(here), "actual": c["actual"],
                         "expected": c["expected"], "delta": c["delta"], "share": c["share"],
                         "tags": ", ".join(c["tags"]), "volume": c.get("volume"),
                         "price": c.get("price")})  # fmt: skip
            walk(a, c.get("children", []), here)

    for a in doc["anomalies"]:
        rows.append({"id": a["id"], "start": a["start"], "scope": a["scope"],
                     "level": a["by"], "path": a["scope"], "actual": a["actual"],
                     "expected": a["expected"], "delta": a["delta"], "share": "1",
                     "tags": a["direction"], "volume": None, "price": None})  # fmt: skip
        walk(a, a["contributors"], [a["scope"]])
    return rows


@anomalies_app.command("check")
def check(
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Find the anomalies of `anomalies.last` (settings), alert each new one once to
    `anomalies.channels`, and send what is due (with the budget alerts' retries)."""
    svc = _svc()
    result = svc.check_anomalies()
    svc.record_anomalies(result)
    sent = svc.send_alerts(svc.claim_alerts(svc.due_alerts()))
    svc.record_alerts_sent(sent)
    doc = result.to_dict()
    doc["sent"] = [{"key": d["key"], "channel": d["channel"], "error": err} for d, err in sent]
    if fmt == "json":
        _hooks["emit"](doc, "json")
        return
    found = sum(len(r.anomalies) for r in result.reports)
    _hooks["console"]().print(
        f"{found} anomal{'y' if found == 1 else 'ies'}, {len(result.events)} new, "
        f"{result.queued} alert(s) queued, {len(sent)} sent", markup=False)  # fmt: skip
