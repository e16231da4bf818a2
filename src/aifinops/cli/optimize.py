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


def _format(fmt: str, allowed: tuple[str, ...]) -> str:
    """The output format asked for, or a usage error naming those there are."""
    from aifinops.errors import UsageError

    if fmt not in allowed:
        raise UsageError(f"unknown format {fmt!r}", where="--format", hint=" or ".join(allowed))
    return fmt


def _rules(rule: list[str] | None) -> list[str] | None:
    """`--rule` repeated or comma-joined (`--rule idle-gpu,share-gpu`), as a list."""
    if not rule:
        return None
    return [n.strip() for r in rule for n in r.split(",") if n.strip()] or None


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
    their findings (a dismissed one stays dismissed), and show the open ones. The total is
    of what is shown, overlapping findings on one workload counted once (the largest)."""
    if ctx.invoked_subcommand is not None:
        return
    from aifinops.core.recommend import total_saving

    _format(fmt, ("table", "json"))
    rules = _rules(rule)
    svc = _svc()
    # the filters checked before the run: a typo must not cost a run kept in the store
    svc.recommendations(severity=severity, rule=rules, team=team)
    result = svc.optimize(window=window, last=last, rules=rules)
    shown = svc.recommendations(severity=severity, rule=rules, team=team)
    total = total_saving(shown)
    if fmt == "json":
        _hooks["emit"]({"window": list(result.window), "new": result.new,
                        "resolved": list(result.resolved), "notes": list(result.notes),
                        "findings": shown,
                        "monthly_saving_total": str(total), "currency": result.currency},
                       "json")  # fmt: skip
        return
    _table(shown, f"Recommendations {result.window[0]} → {result.window[1]}", "open",
           result.currency,
           [f"{len(result.resolved)} earlier finding(s) not found again: resolved "
            "(aifinops optimize list --status resolved)"] * bool(result.resolved)
           + [f"note: {n}" for n in result.notes])  # fmt: skip


def _table(shown: list[dict[str, Any]], title: str, status: str, currency: str,
           extra: list[str]) -> None:  # fmt: skip
    """Findings as a table; the total of what is shown, overlaps counted once."""
    from aifinops.core.recommend import total_saving

    rows = [
        {"id": f["id"], "rule": f["rule"], "severity": f["severity"],
         "saving/month": f["monthly_saving"], "in total": _counted(f, shown),
         "scope": _scope(f["scope"]), "action": f["action"][:90],
         **({"reason": f["reason"] or ""} if status == "dismissed" else {})}
        for f in shown
    ]  # fmt: skip
    hidden = sum(not f["counted"] for f in shown)
    columns = ("id", "rule", "severity", "saving/month", "in total", "scope", "action",
               *(("reason",) if status == "dismissed" else ()))  # fmt: skip
    _hooks["emit"](rows, "table", title=title, columns=columns,
                   summary=[f"{len(shown)} {status}, {total_saving(shown):,.2f} {currency} a "
                            "month (overlapping findings on one workload counted once: the "
                            f"largest; {hidden} not added)", *extra])  # fmt: skip


def _counted(finding: dict[str, Any], shown: list[dict[str, Any]]) -> str:
    """`yes`, or `no` and the overlapping finding whose larger saving counts instead."""
    if finding["counted"]:
        return "yes"
    instead = [f["id"] for f in shown if f["id"] in finding["overlaps"] and f["counted"]]
    return "no: " + ", ".join(instead)


def _scope(scope: dict[str, str]) -> str:
    """What a finding is about, in a few words: its workload, else its namespace's
    (a group of runs, a placement), else its team's."""
    if scope.get("workload"):
        return scope["workload"]
    if scope.get("namespace"):
        return " ".join(filter(None, (scope["namespace"], scope.get("kind"))))
    return scope.get("team") or scope.get("instance_type") or ""


@optimize_app.command("list")
def list_(
    status: Annotated[str, typer.Option(help="open, dismissed, applied or resolved.")] = "open",
    rule: Annotated[list[str] | None, typer.Option(help="Only these rules (repeat).")] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium or high.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's findings.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """The stored findings, without running the rules."""
    from aifinops.core.recommend import total_saving

    _format(fmt, ("table", "json"))
    svc = _svc(True)
    shown = svc.recommendations(severity=severity, rule=_rules(rule), team=team, status=status)
    total = total_saving(shown)
    currency = shown[0]["currency"] if shown else svc.ctx.settings.currency
    if fmt == "json":
        _hooks["emit"]({"findings": shown, "monthly_saving_total": str(total),
                        "currency": currency}, "json")  # fmt: skip
        return
    _table(shown, f"Findings ({status})", status, currency, [])


@optimize_app.command("show")
def show(
    finding: Annotated[str, typer.Argument(help="The finding's id.")],
    fmt: Annotated[str, typer.Option("--format", help="json or yaml.")] = "yaml",
) -> None:
    """One finding whatever its status: evidence, action, patch and history."""
    _format(fmt, ("yaml", "json"))
    found = _svc(True).finding(finding)
    if fmt == "json":
        _hooks["emit"](found, "json")
        return
    import yaml

    typer.echo(yaml.safe_dump(found, sort_keys=False, allow_unicode=True), nl=False)


@optimize_app.command("dismiss")
def dismiss(
    finding: Annotated[str, typer.Argument(help="The finding's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in its history).")] = "",
) -> None:
    """Dismiss a finding: later runs keep it dismissed."""
    _said(_svc().set_finding_status(finding, "dismissed", reason, "cli"))


@optimize_app.command("apply")
def apply(finding: Annotated[str, typer.Argument(help="The finding's id.")]) -> None:
    """Mark a finding applied (its saving is measured from the next window on)."""
    _said(_svc().set_finding_status(finding, "applied", None, "cli"))


def _said(done: dict[str, Any]) -> None:
    """What changed; a finding that already had the status is left as it was (an applied
    one keeps the time it was applied: its saving is measured from then)."""
    if done["changed"]:
        text = f"{done['id']}: {done['status']}"
    else:
        since = next((h["at"] for h in reversed(done["history"])
                      if h["event"] == done["status"]), None)  # fmt: skip
        text = f"{done['id']}: already {done['status']}" + (f" since {since}" if since else "")
    _hooks["console"]().print(text, markup=False)
