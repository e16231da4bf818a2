"""`aifinops budget ...`: list, show, apply, delete, status and check budgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifinops.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from aifinops.service import Service

budget_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Budgets: limits per team, namespace, model or label; alerts; enforcement.",
)

# set by cli/main.py: the invocation's service, its console, and its output
_hooks: dict[str, Callable[..., Any]] = {}


def _svc(read_only: bool = False) -> Service:
    return _hooks["service"](read_only)  # type: ignore[no-any-return]


def _out(stderr: bool = False) -> Any:
    return _hooks["console"](stderr)


def _at(text: str | None) -> Any:
    from aifinops.core.budgets import in_range
    from aifinops.core.windows import parse_instant

    return in_range(parse_instant(text, what="--at"), "--at") if text else None


FORMAT = Annotated[str, typer.Option("--format", help="table or json.")]
AT = Annotated[str | None, typer.Option("--at", help="Evaluate as of this instant (ISO 8601).")]


def read_documents(path: Path) -> list[Any]:
    """Every YAML document in a file (`-` for standard input)."""
    import sys

    import yaml

    from aifinops.config import yaml_documents

    where = "stdin" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
        return yaml_documents(text)
    except OSError as exc:
        raise ConfigError(f"cannot read the budget file: {exc.strerror}", where=where) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", where=where,
                          hint="save the file as UTF-8") from None  # fmt: skip
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", where=where) from exc


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"unknown format {fmt!r}", where="--format", hint="table, json")


@budget_app.command("list")
def budget_list(fmt: FORMAT = "table") -> None:
    """The budgets: limit, period, scope, enforcement, and where each is kept."""
    _check_format(fmt)
    rows = [{"name": b.name, "limit": str(b.spec.amount), "period": b.spec.period,
             "scope": b.spec.scope.words(), "alerts": len(b.spec.alerts),
             "enforcement": b.spec.enforcement.action, "enabled": b.spec.enabled,
             "from": origin} for b, origin in _svc(True).budget_list()]  # fmt: skip
    _hooks["emit"](rows, fmt, title="Budgets",
                   columns=("name", "limit", "period", "scope", "alerts", "enforcement",
                            "enabled", "from"))  # fmt: skip


@budget_app.command("show")
def budget_show(name: Annotated[str, typer.Argument(help="The budget's name.")]) -> None:
    """A budget as a CostBudget document (YAML)."""
    import yaml

    budget, _ = _svc(True).budget(name)
    _out().file.write(yaml.safe_dump(budget.to_document(), sort_keys=False))


APPLY_HELP = "YAML file of budgets (CostBudget documents, the plain shape, or a list); - for stdin."


@budget_app.command("apply")
def budget_apply(
    path: Annotated[Path, typer.Argument(help=APPLY_HELP)],
) -> None:
    """Create or replace budgets from a file; all are checked before any is kept."""
    for a in _svc().apply_budgets(read_documents(path), str(path)):
        _out().print(f"budget {a.name}: {a.outcome}", markup=False)


@budget_app.command("delete")
def budget_delete(name: Annotated[str, typer.Argument(help="The budget's name.")]) -> None:
    """Delete a budget (its alert history stays)."""
    _svc().delete_budget(name)
    _out().print(f"budget {name}: deleted", markup=False)


@budget_app.command("status")
def budget_status(
    name: Annotated[str | None, typer.Argument(help="One budget (default: all).")] = None,
    at: AT = None,
    fmt: FORMAT = "table",
) -> None:
    """Spend so far, its share of the limit, the projected period spend with its interval,
    and whether enforcement is active."""
    _check_format(fmt)
    statuses = _svc(True).budget_statuses(_at(at), [name] if name else None)
    if fmt == "json":
        _hooks["emit"]([s.to_dict() for s in statuses], "json")
        return
    rows = []
    for s in statuses:
        d = s.to_dict()
        p = d["projectedPeriodSpend"]
        rows.append({
            "name": d["name"], "status": d["budgetStatus"], "spend": d["currentSpend"],
            "limit": d["limit"], "used %": d["percentageUsed"],
            "projected": f"{p['amount']} ({p['interval80'][0]}-{p['interval80'][1]})",
            "crosses": p["limitCrossingDate"] or "-", "days left": d["daysRemaining"],
            "enforcing": "yes" if d["enforcementActive"] else "no",
        })  # fmt: skip
    _hooks["emit"](rows, "table", title="Budgets",
                   columns=("name", "status", "spend", "limit", "used %", "projected",
                            "crosses", "days left", "enforcing"))  # fmt: skip


DRY_RUN_HELP = "Show what would be sent; record and send nothing."


@budget_app.command("check")
def budget_check(
    at: AT = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=DRY_RUN_HELP)] = False,
    fmt: FORMAT = "table",
) -> None:
    """Check every budget's alerts now (or --at): those newly over their threshold fire,
    once per period, and are sent to their channels; those back under resolve."""
    _check_format(fmt)
    svc = _svc(read_only=dry_run)  # a dry run writes nothing: it runs beside `serve`
    result = svc.check_budgets(_at(at), dry_run=dry_run)
    sent: list[tuple[dict[str, Any], str | None]] = []
    if not dry_run:
        due = svc.claim_alerts(svc.due_alerts())  # sent once, beside a server too
        sent = svc.send_alerts(due)
        svc.record_alerts_sent(sent)
    if fmt == "json":
        doc = result.to_dict()
        doc["sent"] = [{"key": d["key"], "action": d["action"], "channel": d["channel"],
                        "error": err} for d, err in sent]  # fmt: skip
        _hooks["emit"](doc, "json")
        return
    out = _out()
    for s in result.statuses:
        out.print(f"{s.budget.name}: {s.state}, {s.percentage}% of {s.limit} {s.currency}",
                  markup=False)  # fmt: skip
    for e in result.events:
        out.print(f"{'would ' if dry_run else ''}{e.action}: {e.title()}", markup=False)
    for o in result.outgoing:
        out.print(f"  -> {o['channel']} {o['method']} {o['target']}", markup=False)
        out.print("     " + o["body"].replace("\n", "\n     "), markup=False)
    for d, err in sent:
        what = "delivered" if err is None else f"failed ({err}); retried later"
        out.print(f"  {d['channel']}: {d['action']} {d['key']}: {what}", markup=False)
    if not result.events:
        out.print("no alert fired or resolved", markup=False)
    for note in result.notes:
        _out(stderr=True).print(f"note: {note}", markup=False)
