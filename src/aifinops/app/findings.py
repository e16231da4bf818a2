"""Findings: run the recommendation rules over a window's facts, keep each finding under
its stable id (a dismissed one stays dismissed on later runs), list them with which of
them overlap (and which of those counts in a total), and record what people did with them
(dismissed with a reason, applied) in each one's history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.core.recommend import Finding, run_rules, total_saving
from aifinops.core.recommend.base import enabled_rules, overlaps
from aifinops.core.windows import Window, align_down, align_up, from_ms, iso_z
from aifinops.errors import ConfigError, NotFoundError, UsageError
from aifinops.store import findings as stored

if TYPE_CHECKING:
    from aifinops.app.context import AppContext
    from aifinops.app.costs import Costs
    from aifinops.app.recommend import Recommend

# resolved: open, and not found again by a later run of its rule over the newest data
STATUSES = ("open", "dismissed", "applied", "resolved")
SEVERITIES = ("low", "medium", "high")
REASON_CHARS = 1000  # a reason is a sentence or two, kept in every answer about the finding
ID_SHOWN = 60  # how much of an unknown id an error repeats


def rule_names(rule: str | Sequence[str] | None) -> set[str]:
    """The rules a filter names (repeated, comma-joined or both); an unknown one refused."""
    from aifinops.core.recommend import RULES
    from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

    given = [rule] if isinstance(rule, str) else list(rule or ())
    names = {n.strip() for r in given for n in r.split(",") if n.strip()}
    unknown = sorted(names - set(RULES))
    if unknown:
        raise UsageError(f"unknown rule {', '.join(repr(n) for n in unknown)}", where="rule",
                         hint=", ".join(sorted(RULES)))  # fmt: skip
    return names


def shown_id(fid: str) -> str:
    """An id as an error repeats it: a long one cut (the caller sent it; echoing a
    megabyte back helps no one)."""
    return repr(fid if len(fid) <= ID_SHOWN else fid[:ID_SHOWN] + "…")


def clean_reason(reason: str | None) -> str | None:
    """A reason as kept: stripped; refused when too long or holding control characters
    (other than tab and newline), which would garble the tables and logs it is shown in."""
    if reason is None:
        return None
    text = reason.replace("\r\n", "\n").strip()
    if len(text) > REASON_CHARS:
        raise UsageError(f"the reason is {len(text):,} characters; at most {REASON_CHARS:,} "
                         "characters are kept", where="reason",
                         hint="say why in a sentence or two")  # fmt: skip
    bad = sorted({c for c in text if (ord(c) < 32 and c not in "\t\n") or ord(c) == 127})
    if bad:
        raise UsageError(f"the reason holds control character(s) "
                         f"{', '.join(repr(c) for c in bad)}", where="reason",
                         hint="plain text, tabs and newlines")  # fmt: skip
    return text


@dataclass(frozen=True)
class RunResult:
    window: tuple[str, str]
    findings: list[Finding]
    new: list[str]
    currency: str
    rules: tuple[str, ...] = ()  # the rules that ran
    # over the newest sample (the window holds it): what it did not find again is resolved
    current: bool = False
    resolved: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def total(self) -> Decimal:
        return total_saving([f.to_dict() for f in self.findings])


class Findings:
    def __init__(self, ctx: AppContext, costs: Costs, recommend: Recommend):
        self.ctx, self.costs, self.recommend = ctx, costs, recommend

    def run(self, window: str | None = None, last: str | None = None,
            rules: list[str] | None = None) -> RunResult:  # fmt: skip
        """The rules over the window's facts (default: the 7 days up to the newest
        sample); their findings stored (new ones open, known ones updated, statuses kept).
        A window reaching beyond the data is cut to the hours the data cover: a saving is
        a month of the run-rate the data show, not diluted by days nobody measured."""
        configs = self._configs()
        extent = self.costs.data_extent()
        win = _within(self.costs.resolve_window(window, last), extent)
        facts = self.recommend.facts(win)
        now_ms = self.ctx.now_ms()
        found = run_rules(facts, now_ms, configs, rules)
        result = RunResult((iso_z(win.start) or "", iso_z(win.end) or ""), found, [],
                           facts.currency, tuple(enabled_rules(configs, rules)),
                           current=extent is not None
                           and win.start_ms <= extent[1] < win.end_ms,
                           notes=_outside(win, extent, len(facts.holdings)))  # fmt: skip
        if self.ctx.read_only:
            return result
        return self.keep(result, now_ms)

    def _configs(self) -> dict[str, Any]:
        """The settings' `recommendations:`, each rule's checked against its config model
        before any work (a typo there is the user's to fix, not a traceback)."""
        from pydantic import ValidationError

        from aifinops.core.recommend import RULES
        from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

        configs = self.ctx.settings.recommendations
        for name, cfg in configs.items():
            if name not in RULES:
                raise ConfigError(f"unknown recommendation rule {name}",
                                  where="recommendations",
                                  hint=", ".join(sorted(RULES)))  # fmt: skip
            try:
                RULES[name][0].model_validate(dict(cfg))
            except ValidationError as error:
                problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
                                     for e in error.errors())  # fmt: skip
                raise ConfigError(
                    problems,
                    where=f"recommendations.{name}",
                    hint="the config file's recommendations: section",
                ) from None
        return configs

    def keep(self, result: RunResult, at_ms: int | None = None) -> RunResult:
        """Store a run's findings (worked out on a read-only store, or by `run`): new ones
        open, known ones updated, statuses kept (a resolved one found again is open
        again). A run over the newest data resolves the open findings of its rules it did
        not find again (the notebook was deleted, the job moved). The result with the ids that
        were new and those resolved."""
        rows = [{**f.to_dict(), "scope": json.dumps(dict(f.scope), sort_keys=True),
                 "evidence": json.dumps(dict(f.evidence), sort_keys=True, default=str),
                 "currency": result.currency} for f in result.findings]  # fmt: skip
        at = self.ctx.now_ms() if at_ms is None else at_ms
        resolved: list[str] = []
        with self.ctx.store.transaction():
            new = stored.upsert(self.ctx.store, rows, at)
            if result.current:
                resolved = stored.resolve_missing(
                    self.ctx.store, result.rules, [f.id for f in result.findings], at,
                    f"not found again over {result.window[0]} to {result.window[1]}")  # fmt: skip
        return replace(result, new=new, resolved=tuple(resolved))

    def listed(
        self,
        *,
        severity: str | None = None,
        rule: str | Sequence[str] | None = None,
        team: str | None = None,
        status: str | None = "open",
    ) -> list[dict[str, Any]]:
        """The stored findings, largest saving first: filtered first (status, severity,
        rule or rules, team), then grouped, so that what is shown adds up on its own. Each
        carries `overlaps`, the ids of the other listed findings it overlaps (the usage
        rules on one workload, `core.recommend.base.overlaps`), and `counted`, whether its
        saving counts in the total of the list: the largest of its group does (a tie goes
        to the smallest id), one that overlaps nothing does. `total_saving` of the list
        (= the sum of the counted savings) is the list's de-duplicated total. A finding
        filtered out neither overlaps nor hides one that is shown: `--rule share-gpu`
        lists and counts every share-gpu finding, even where an idle-gpu one is larger."""
        if severity is not None and severity not in SEVERITIES:
            raise UsageError(f"unknown severity {severity!r}", where="severity",
                             hint=", ".join(SEVERITIES))  # fmt: skip
        if status is not None and status not in STATUSES:
            raise UsageError(f"unknown status {status!r}", where="status",
                             hint=", ".join(STATUSES))  # fmt: skip
        rules = rule_names(rule)
        out = []
        for r in stored.findings(self.ctx.store, status=status):
            scope = json.loads(r["scope"])
            if (severity and r["severity"] != severity) or (rules and r["rule"] not in rules):
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
        for row, o in zip(out, overlaps(out), strict=True):
            row["overlaps"] = [out[i]["id"] for i in o.others]
            row["counted"] = o.counted
        return out

    def set_status(self, fid: str, status: str, reason: str | None = None,
                   actor: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Dismiss a finding (a reason is required), mark it applied, or open it again; a
        dismissed one stays dismissed on later runs. Asked again for the status it has
        (a retried request), nothing changes and nothing is written (`changed` false): an
        applied one keeps the time it was applied, which its ROI is measured from. A
        dismissed one dismissed with another reason is refused: reopen it first."""
        if status not in ("dismissed", "applied", "open"):
            raise UsageError(f"cannot set status {status!r}", where="status")
        reason = clean_reason(reason)
        if status == "dismissed" and not reason:
            raise UsageError("a dismissal needs a reason", where="reason",
                             hint="say why: --reason 'kept for the launch' (the API: "
                             '{"reason": "kept for the launch"})')  # fmt: skip
        with self.ctx.store.transaction():
            now = stored.status_of(self.ctx.store, fid)
            if now is None:
                raise NotFoundError(f"no finding {shown_id(fid)}", where="finding",
                                    hint="aifinops optimize lists them")  # fmt: skip
            if now[0] == status == "dismissed" and now[1] != reason:
                raise UsageError(f"{shown_id(fid)} is already dismissed, since "
                                 f"{iso_z(now[2])}: {now[1]!r}", where="reason",
                                 hint="reopen it first to dismiss it with another "
                                 "reason")  # fmt: skip
            changed = now[0] != status
            if changed:
                stored.set_status(self.ctx.store, fid, status, reason, self.ctx.now_ms(), actor)
        return {"id": fid, "status": status, "changed": changed, "history": self.history(fid)}

    def get(self, fid: str) -> dict[str, Any]:
        """One stored finding, whatever its status, with its history."""
        for f in self.listed(status=None):
            if f["id"] == fid:
                return {**f, "history": self.history(fid)}
        raise NotFoundError(f"no finding {shown_id(fid)}", where="finding",
                            hint="aifinops optimize lists them")  # fmt: skip

    def history(self, fid: str) -> list[dict[str, Any]]:
        return [{**h, "at": iso_z(h.pop("ts_ms"))} for h in stored.history(self.ctx.store, fid)]


def _outside(win: Window, extent: tuple[int, int] | None, holdings: int) -> tuple[str, ...]:
    """What to say of a window in which no GPU was held."""
    if holdings:
        return ()
    if extent is None:
        return ("the store holds no GPU samples yet",)
    if win.end_ms <= extent[0] or win.start_ms > extent[1]:
        return (f"the window holds no samples: they run from {iso_z(extent[0])} to "
                f"{iso_z(extent[1])}",)  # fmt: skip
    return ("no GPU was held by a workload in the window",)


def _within(win: Window, extent: tuple[int, int] | None) -> Window:
    """`win` cut to the whole hours the samples cover (unchanged when it lies outside them:
    its facts are empty then)."""
    if extent is None:
        return win
    hour = timedelta(hours=1)
    start = max(win.start, align_down(from_ms(extent[0]), hour))
    end = min(win.end, align_up(from_ms(extent[1] + 1), hour))
    return Window(start, end) if start < end else win
