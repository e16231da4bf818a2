"""The recommendations' routes: the stored findings (the seed's path), dismissing or
applying one (admins), and the ROI of those applied."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# Viewer/Admin are local to `install`

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query
from starlette.concurrency import run_in_threadpool

from aifinops.api.server import Server
from aifinops.core.access import Caller
from aifinops.errors import UsageError


def install(
    app: FastAPI,
    server: Server,
    viewer: Callable[..., Caller],
    admin: Callable[..., Caller],
) -> None:
    Viewer = Annotated[Caller, Depends(viewer)]
    Admin = Annotated[Caller, Depends(admin)]

    def read(key: Any, compute: Callable[[Any], Any]) -> Any:
        return server.cached(key, compute)

    @app.get("/api/v1/recommendations", tags=["recommendations"])
    def recommendations(
        _: Viewer,
        severity: str | None = None,
        rule: Annotated[list[str] | None, Query()] = None,
        team: str | None = None,
        status: str = "open",
    ) -> dict[str, Any]:
        """The findings of the last recommendations run (`aifinops optimize`, or the
        server's job), largest monthly saving first; `status` open (default), dismissed,
        applied or resolved; `rule` one or several (repeated, or comma-joined). Each says
        which listed findings it `overlaps` and whether it is `counted` in
        `monthly_saving_total` (overlaps on one workload counted once)."""
        rules = tuple(rule) if rule else None
        found = read(("recommendations", severity, rules, team, status),
                     lambda s: s.recommendations(severity=severity, rule=rules, team=team,
                                                 status=status))  # fmt: skip
        from aifinops.core.recommend import total_saving

        return {"recommendations": found, "total": len(found),
                "monthly_saving_total": str(total_saving(found))}  # fmt: skip

    @app.get("/api/v1/recommendations/{finding}", tags=["recommendations"])
    def finding(finding: str, _: Viewer) -> dict[str, Any]:
        """One finding, whatever its status, with its history (found, dismissed, applied,
        measured)."""
        return read(("finding", finding), lambda s: s.finding(finding))  # type: ignore[no-any-return]

    @app.post("/api/v1/recommendations/{finding}/{action}", tags=["recommendations"])
    async def set_status(
        finding: str,
        action: str,
        caller: Admin,
        reason: Annotated[str | None, Body(embed=True)] = None,
    ) -> dict[str, Any]:
        """`dismiss` (a reason is required; it stays dismissed on later runs), `apply`
        (its saving is measured from then on) or `reopen` a finding."""
        status = {"dismiss": "dismissed", "apply": "applied", "reopen": "open"}.get(action)
        if status is None:
            raise UsageError(f"unknown action {action!r}", where="path",
                             hint="dismiss, apply or reopen")  # fmt: skip

        def run() -> Any:
            with server.writing() as svc:
                out = svc.set_finding_status(finding, status, reason, caller.name)
                svc.audit(caller, f"recommendation {action}", finding, 200, None)
            return out

        return await run_in_threadpool(run)  # type: ignore[no-any-return]

    @app.get("/api/v1/roi", tags=["recommendations"])
    def roi(
        _: Viewer,
        investment: Annotated[Decimal | None, Query(ge=0, le=Decimal("1e15"))] = None,
    ) -> dict[str, Any]:
        """What applied findings saved a month, measured before and after on their scope
        (`confirmed by bill` where bills cover it, else `estimate`), by category (spot,
        sharing, rightsizing, idle, commitments, placement), the projected annual saving,
        its share of the baseline and the payback of `investment` (default: the
        settings' `roi.investment`); open findings' potential beside it."""
        return read(  # type: ignore[no-any-return]
            ("roi", investment), lambda s: s.roi(investment=investment).to_dict()
        )
