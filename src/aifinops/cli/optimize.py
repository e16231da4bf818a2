"""`aifinops optimize`: what to change to spend less — run the recommendation rules, list
their findings, dismiss or apply one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aifinops.service import Service

optimize_app = typer.Typer(
    rich_markup_mode=None,
    help="Recommendations: idle and oversized GPUs, sharing, spot, commitments, schedules.",
)
_hooks: dict[str, Callable[..., Any]] = {}


def _svc(read_only: bool = False) -> Service:
    return _hooks["service"](read_only)  # type: ignore[no-any-return]


@optimize_app.callback(invoke_without_command=True)
def optimize(
    ctx: typer.Context,
    window: Annotated[str | None, typer.Option(help="START,END (ISO 8601).")] = None,
    last: Annotated[str | None, typer.Option(help="A window ending now, e.g. 7d.")] = None,
    rule: Annotated[list[str] | None, typer.Option(help="Only these rules (repeat).")] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium or high.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's findings.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Run the rules over the window (default: the 7 days up to the newest sample), keep
    their findings (a dismissed one stays dismissed), and show the open ones."""
    if ctx.invoked_subcommand is not None:
        return
    svc = _svc()
    result = svc.optimize(window=window, last=last, rules=rule)
    shown = svc.recommendations(severity=severity, rule=rule[0] if rule and len(rule) == 1
                                else None, team=team)  # fmt: skip
    if fmt == "json":
        _hooks["emit"]({"window": list(result.window), "new": result.new,
                        "findings": shown}, "json")  # fmt: skip
        return
    rows = [
        {"id": f["id"], "rule": f["rule"], "severity": f["severity"],
         "saving/month": f["monthly_saving"],
         "scope": f["scope"].get("workload") or f["scope"].get("team") or "",
         "action": f["action"][:90]}
        for f in shown
    ]  # fmt: skip
    from aifinops.core.recommend import total_saving

    total = total_saving(shown)
    _hooks["emit"](rows, "table", title=f"Recommendations {result.window[0]} → "
                   f"{result.window[1]}", columns=("id", "rule", "severity", "saving/month",
                                                   "scope", "action"),
                   summary=[f"{len(shown)} open, {total:,.2f} {result.currency} a month "
                            "(overlapping findings on one workload counted once)"])  # fmt: skip


@optimize_app.command("dismiss")
def dismiss(
    finding: Annotated[str, typer.Argument(help="The finding's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in its history).")] = "",
) -> None:
    """Dismiss a finding: later runs keep it dismissed."""
    done = _svc().set_finding_status(finding, "dismissed", reason, "cli")
    _hooks["console"]().print(f"{done['id']}: dismissed", markup=False)


@optimize_app.command("apply")
def apply(finding: Annotated[str, typer.Argument(help="The finding's id.")]) -> None:
    """Mark a finding applied (its saving is measured from the next window on)."""
    done = _svc().set_finding_status(finding, "applied", None, "cli")
    _hooks["console"]().print(f"{done['id']}: applied", markup=False)
