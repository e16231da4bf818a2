"""`aifinops forecast`: spend per scope to the end of the month (or a horizon) with 80 % and
95 % intervals, and `forecast backtest`: how wrong the month-end forecast was on the
store's own history."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aifinops.service import Service

forecast_app = typer.Typer(
    rich_markup_mode=None,
    help="Forecasts: month-end spend per scope with intervals, and their backtest.",
)
_hooks: dict[str, Callable[..., Any]] = {}


def _svc() -> Service:
    return _hooks["service"](True)  # type: ignore[no-any-return]


def _format(fmt: str, allowed: tuple[str, ...]) -> str:
    from aifinops.errors import UsageError

    if fmt not in allowed:
        raise UsageError(f"unknown format {fmt!r}", where="--format", hint=" or ".join(allowed))
    return fmt


def _by(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _at(text: str | None) -> Any:
    from aifinops.core.windows import parse_instant

    return None if text is None else parse_instant(text, what="--at")


def _scope(key: dict[str, str]) -> str:
    return "/".join(key.values()) or "(all)"


@forecast_app.callback(invoke_without_command=True)
def forecast(
    ctx: typer.Context,
    by: Annotated[
        str,
        typer.Option(
            help="Scope: team, model, namespace, project, ... (comma-joined; empty: the whole)."
        ),
    ] = "team",
    horizon: Annotated[
        str | None,
        typer.Option(
            help="How far ahead, e.g. 30d (default: forecast.horizon); up to 2d is hourly."
        ),
    ] = None,
    period_end: Annotated[
        bool, typer.Option("--period-end", help="To the end of this month.")
    ] = False,
    history: Annotated[
        str | None,
        typer.Option(help="How much history to rest on (default: forecast.history, 90d)."),
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Forecast as of this instant (default: the newest sample).")
    ] = None,
    points: Annotated[bool, typer.Option(help="Show each day (hour) too.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    server: Annotated[
        str | None,
        typer.Option(envvar="AIFINOPS_SERVER", help="Ask a running `aifinops serve` instead."),
    ] = None,
) -> None:
    """Each scope's spend this month (spent so far + the forecast of the rest) and in the
    months the horizon reaches, with 80 % and 95 % intervals. The method is chosen per
    series by a rolling-origin backtest (seasonal naive, AutoETS, AutoARIMA, run-rate);
    with under 14 days of history it is the run-rate, and says so."""
    if ctx.invoked_subcommand is not None:
        return
    _format(fmt, ("table", "json", "csv"))
    if server:
        from aifinops.cli.remote import get

        doc = get(server, "/api/v1/forecast", {
            "by": by, "horizon": horizon, "period_end": str(period_end).lower(),
            "history": history, "at": at,
            "points": str(points or fmt == "json").lower()})  # fmt: skip
    else:
        result = _svc().forecast(by=_by(by), horizon=horizon, period_end=period_end,
                                 history=history, at=_at(at))  # fmt: skip
        doc = result.to_dict(points=points or fmt == "json")
    if fmt == "json":
        _hooks["emit"](doc, "json")
        return
    rows = []
    for s in [*doc["scopes"], *([doc["total"]] if len(doc["scopes"]) > 1 else [])]:
        name = _scope(s["key"]) if s["key"] or len(doc["scopes"]) <= 1 else "TOTAL"
        for p in s["periods"]:
            rows.append({
                "scope": name, "month": p["start"][:7], "spent": p["actual"],
                "forecast": p["forecast"], "80%": " – ".join(p["interval80"]),
                "95%": " – ".join(p["interval95"]),
                "to": "month end" if p["complete"] else doc["to"][:10],
                "method": s["method"],
            })  # fmt: skip
    notes = [n for s in doc["scopes"] for n in ([s["note"]] if s["note"] else [])]
    adjust = [f"{_scope(s['key'])}: {a['kind']} {a.get('workload') or a.get('name')}"
              for s in doc["scopes"] for a in s["adjustments"]]  # fmt: skip
    summary = [f"as of {doc['at']} ({doc['currency']}); horizon {doc['from']} → {doc['to']}, "
               f"per {'hour' if doc['step'] == '1h' else 'day'}"]  # fmt: skip
    distinct = sorted(set(notes))
    if distinct:
        more = f" (and {len(distinct) - 1} more)" if len(distinct) > 1 else ""
        summary.append(f"note: {distinct[0]}{more}")
    summary += [f"known change: {a}" for a in adjust] + [f"note: {n}" for n in doc["notes"]]
    _hooks["emit"](rows, fmt, title="Forecast",
                   columns=("scope", "month", "spent", "forecast", "80%", "95%", "to", "method"),
                   summary=summary)  # fmt: skip
    if points and fmt == "table":
        pts = [{"scope": _scope(s["key"]), "start": p["start"], "mean": p["mean"],
                "80%": " – ".join(p["interval80"]), "95%": " – ".join(p["interval95"])}
               for s in doc["scopes"] for p in s.get("points", [])]  # fmt: skip
        _hooks["emit"](pts, "table", title="Forecast per step",
                       columns=("scope", "start", "mean", "80%", "95%"))  # fmt: skip


@forecast_app.command("backtest")
def backtest(
    by: Annotated[str, typer.Option(help="Scope (comma-joined; empty: the whole).")] = "team",
    history: Annotated[str, typer.Option(help="How far back to look for months.")] = "400d",
    at: Annotated[str | None, typer.Option(help="As of this instant.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """For each scope: the month-end total forecast 7, 14 and 21 days into every complete
    month of the history, its MAPE and sMAPE beside the run-rate's, and how often the
    actual fell inside the 80 % and 95 % intervals."""
    _format(fmt, ("table", "json", "csv"))
    doc = _svc().forecast_backtest(by=_by(by), history=history, at=_at(at))
    if fmt == "json":
        _hooks["emit"](doc, "json")
        return
    rows = []
    for name, s in [*((_scope(s["key"]), s) for s in doc["scopes"]), ("TOTAL", doc["total"])]:
        row: dict[str, Any] = {"scope": name, "cases": s["cases"]}
        for c in doc["checkpoints"]:
            at_c = s["checkpoints"].get(c)
            row[f"MAPE d{c}"] = f"{at_c['mape']:.2f}" if at_c else ""
            row[f"sMAPE d{c}"] = f"{at_c['smape']:.2f}" if at_c else ""
            row[f"run-rate d{c}"] = f"{at_c['baseline_mape']:.2f}" if at_c else ""
        row["in 80%"] = f"{s['coverage80']:.1f}" if "coverage80" in s else ""
        row["in 95%"] = f"{s['coverage95']:.1f}" if "coverage95" in s else ""
        rows.append(row)
    columns = ("scope", "cases",
               *(f"{k} d{c}" for c in doc["checkpoints"] for k in ("MAPE", "sMAPE", "run-rate")),
               "in 80%", "in 95%")  # fmt: skip
    _hooks["emit"](rows, fmt, title="Month-end forecast backtest (errors in %)", columns=columns,
                   summary=[f"history {doc['from']} → {doc['to']}",
                            *(f"note: {n}" for n in doc["notes"])])  # fmt: skip
