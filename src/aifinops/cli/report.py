"""`aifinops report`: the report for finance of a window, written as HTML, PDF, Markdown
or CSV (from the output's suffix, or --format)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aifinops.service import Service

_hooks: dict[str, Callable[..., Any]] = {}


def _svc() -> Service:
    return _hooks["service"](True)  # type: ignore[no-any-return]


def report(
    output: Annotated[
        list[Path],
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="report.html, report.pdf, report.md or report.csv; again for more "
            "files of the same report.",
        ),
    ],
    window: Annotated[
        str | None,
        typer.Option(
            help="START,END (UTC, half-open). Default: the 7 days up to the newest "
            "sample, as `cost`."
        ),
    ] = None,
    last: Annotated[str | None, typer.Option(help="A span ending now, e.g. 7d, 30d.")] = None,
    by: Annotated[str, typer.Option(help="Cost by these dimensions, comma-separated.")] = "team",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="html, pdf, md or csv (default: each output's suffix)."),
    ] = None,
) -> None:
    """Write a report for finance: spend and its change, the month-end forecast, cost by
    team and model with charts, recommendations, budgets, anomalies, ROI, and the month's
    chargeback per team."""
    dims = [p.strip() for p in by.split(",") if p.strip()]
    written = _svc().report(output, fmt=fmt, window=window, last=last, by=dims)
    console = _hooks["console"](True)
    for done in written:
        extra = f" (charts: {', '.join(done['files'])})" if done["files"] else ""
        console.print(f"{done['format']} report, {done['bytes']:,} bytes -> {done['path']}"
                      f"{extra}", markup=False, highlight=False)  # fmt: skip
