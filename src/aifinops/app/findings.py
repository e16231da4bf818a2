"""Findings: run the recommendation rules over a window's facts, keep each finding under
its stable id (a dismissed one stays dismissed on later runs), list them, and record what
people did with them (dismissed with a reason, applied) in each one's history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.core.recommend import Finding, run_rules, total_saving
from aifinops.core.windows import iso_z
from aifinops.errors import NotFoundError, UsageError
from aifinops.store import findings as stored

if TYPE_CHECKING:
    from aifinops.app.context import AppContext
    from aifinops.app.costs import Costs
    from aifinops.app.recommend import Recommend

STATUSES = ("open", "dismissed", "applied")
SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class RunResult:
    window: tuple[str, str]
    findings: list[Finding]
    new: list[str]
    currency: str

    def total(self) -> Decimal:
        return total_saving([f.to_dict() for f in self.findings])


class Findings:
    def __init__(self, ctx: AppContext, costs: Costs, recommend: Recommend):
        self.ctx, self.costs, self.recommend = ctx, costs, recommend

    def run(self, window: str | None = None, last: str | None = None,
            rules: list[str] | None = None) -> RunResult:  # fmt: skip
        """The rules over the window's facts (default: the 7 days up to the newest
        sample); their findings stored (new ones open, known ones updated, statuses kept)."""
        win = self.costs.resolve_window(window, last)
        facts = self.recommend.facts(win)
        now_ms = self.ctx.now_ms()
        found = run_rules(facts, now_ms, self.ctx.settings.recommendations, rules)
        rows = [{**f.to_dict(), "scope": json.dumps(dict(f.scope), sort_keys=True),
                 "evidence": json.dumps(dict(f.evidence), sort_keys=True, default=str),
                 "currency": facts.currency} for f in found]  # fmt: skip
        if self.ctx.read_only:
            new: list[str] = []
        else:
            with self.ctx.store.transaction():
                new = stored.upsert(self.ctx.store, rows, now_ms)
        return RunResult((iso_z(win.start) or "", iso_z(win.end) or ""), found, new,
                         facts.currency)  # fmt: skip

    def listed(
        self,
        *,
        severity: str | None = None,
        rule: str | None = None,
        team: str | None = None,
        status: str | None = "open",
    ) -> list[dict[str, Any]]:
        """The stored findings, largest saving first, filtered."""
        if severity is not None and severity not in SEVERITIES:
            raise UsageError(f"unknown severity {severity!r}", where="severity",
                             hint=", ".join(SEVERITIES))  # fmt: skip
        if status is not None and status not in STATUSES:
            raise UsageError(f"unknown status {status!r}", where="status",
                             hint=", ".join(STATUSES))  # fmt: skip
        out = []
        for r in stored.findings(self.ctx.store, status=status):
            scope = json.loads(r["scope"])
            if (severity and r["severity"] != severity) or (rule and r["rule"] != rule):
                continue
            if team and scope.get("team") != team:
                continue
            out.append({
                "id": r["id"], "rule": r["rule"], "severity": r["severity"], "scope": scope,
                "monthly_saving": str(Decimal(r["monthly_saving"]).quantize(Decimal("0.01"))),
                "currency": r["currency"], "confidence": str(r["confidence"].normalize()),
                "action": r["action"], "patch": r["patch"],
                "evidence": json.loads(r["evidence"]), "status": r["status"],
                "reason": r["reason"], "first_seen": iso_z(r["first_seen_ms"]),
                "last_seen": iso_z(r["last_seen_ms"]),
            })  # fmt: skip
        return out

    def set_status(self, fid: str, status: str, reason: str | None = None,
                   actor: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Dismiss a finding (a reason is required) or mark it applied; a dismissed one
        stays dismissed on later runs."""
        if status not in ("dismissed", "applied", "open"):
            raise UsageError(f"cannot set status {status!r}", where="status")
        if status == "dismissed" and not (reason or "").strip():
            raise UsageError("a dismissal needs a reason", where="--reason",
                             hint="say why, e.g. --reason 'kept for the launch'")  # fmt: skip
        with self.ctx.store.transaction():
            if not stored.set_status(self.ctx.store, fid, status, reason, self.ctx.now_ms(),
                                     actor):  # fmt: skip
                raise NotFoundError(f"no finding {fid!r}", where="finding",
                                    hint="aifinops optimize lists them")  # fmt: skip
        return {"id": fid, "status": status, "history": self.history(fid)}

    def history(self, fid: str) -> list[dict[str, Any]]:
        return [{**h, "at": iso_z(h.pop("ts_ms"))} for h in stored.history(self.ctx.store, fid)]
