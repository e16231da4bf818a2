"""The report for finance (`aifinops report`): the summary of a window (`app/summary.py`),
its cost by model beside it, and a chargeback appendix per team, handed to the renderers
in `outputs/report/` (HTML, PDF, Markdown, CSV). Nothing is worked out here that `cost`,
`export chargeback` or the summary do not already give."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifinops.app.costs import CostQuery
from aifinops.app.summary import cost_rows, money
from aifinops.core.windows import iso_z, parse_instant

if TYPE_CHECKING:
    from aifinops.app.bills import Bills
    from aifinops.app.context import AppContext
    from aifinops.app.costs import Costs
    from aifinops.app.summary import Summary

# the appendix: each team's cost by namespace and workload, as `export chargeback` gives it
CHARGEBACK_BY = ("team", "namespace", "workload")


class Report:
    def __init__(self, ctx: AppContext, costs: Costs, bills: Bills, summary: Summary):
        self.ctx, self.costs, self.bills, self.summary = ctx, costs, bills, summary

    def data(self, window: str | None = None, last: str | None = None,
             by: Sequence[str] = ("team",)) -> dict[str, Any]:  # fmt: skip
        """What the report shows: the summary; the same window by model; and the chargeback
        of the calendar month holding the window's end (`export chargeback --month`, by
        team, namespace and workload), which finance books by month."""
        summary = self.summary.summary(window, last, by)
        span = f"{summary['window']['start']},{summary['window']['end']}"
        by_model = self.costs.cost(CostQuery(window=span, by=("model",)))
        month = parse_instant(summary["window"]["end"]) - timedelta(milliseconds=1)
        month_text = f"{month:%Y-%m}"
        rows = self.bills.export_chargeback(None, month=month_text, by=CHARGEBACK_BY)
        teams: dict[str, list[dict[str, Any]]] = {}
        for r in rows[:-1]:  # the last is the TOTAL row
            teams.setdefault(r["team"], []).append(r)
        return {
            "generated": iso_z(self.ctx.clock().replace(microsecond=0)),
            "summary": summary,
            "by_model": {"by": ["model"], "rows": cost_rows(by_model),
                         "total_cost": money(by_model.total_cost)},
            "chargeback": {"month": month_text, "by": list(CHARGEBACK_BY),
                           "currency": summary["currency"],
                           "total_cost": rows[-1]["total_cost"],
                           "teams": [{"team": t, "rows": rs, "total_cost": _added(rs)}
                                     for t, rs in teams.items()]},
        }  # fmt: skip

    def write(self, paths: Sequence[Path], *, fmt: str | None = None,
              window: str | None = None, last: str | None = None,
              by: Sequence[str] = ("team",)) -> list[dict[str, Any]]:  # fmt: skip
        """The report written to each of `paths` in `fmt` (else the format its suffix
        names, each checked before anything is read), from one reading of the store."""
        from aifinops.outputs.report import report_format, write_report

        kinds = [report_format(p, fmt) for p in paths]
        data = self.data(window, last, by)
        return [write_report(data, p, kind) for p, kind in zip(paths, kinds, strict=True)]


def _added(rows: list[dict[str, Any]]) -> str:
    """A team's chargeback rows added up as the file shows them (each to the cent)."""
    return f"{sum((Decimal(r['total_cost']) for r in rows), Decimal('0.00')):.2f}"
