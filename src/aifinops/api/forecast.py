"""The forecast's routes: spend per scope to the month's end (or a horizon) with its
intervals, and the month-end backtest on the store's own history."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# Viewer is local to `install`

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from aifinops.api.server import Server
from aifinops.core.access import Caller
from aifinops.core.windows import parse_instant


def install(app: FastAPI, server: Server, viewer: Callable[..., Caller]) -> None:
    Viewer = Annotated[Caller, Depends(viewer)]

    def _by(by: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in by.split(",") if p.strip())

    @app.get("/api/v1/forecast", tags=["forecast"])
    def forecast(
        _: Viewer,
        by: str = "team",
        horizon: str | None = None,
        period_end: bool = False,
        history: str | None = None,
        at: str | None = None,
        points: bool = True,
    ) -> dict[str, Any]:
        """Each scope's spend per day (per hour for a horizon up to 2d) from the newest
        sample to the horizon (`30d` by default) or to the month's end (`period_end`),
        with 80 % and 95 % intervals; each month's total (spent so far + the rest); the
        method chosen per series by backtest, and the known changes it honoured."""
        when = None if at is None else parse_instant(at, what="at")
        dims = _by(by)
        result = server.cached(
            ("forecast", dims, horizon, period_end, history, at),
            lambda s: s.forecast(by=dims, horizon=horizon, period_end=period_end,
                                 history=history, at=when),
        )  # fmt: skip
        return result.to_dict(points=points)  # type: ignore[no-any-return]

    @app.get("/api/v1/forecast/backtest", tags=["forecast"])
    def backtest(
        _: Viewer, by: str = "team", history: str = "400d", at: str | None = None
    ) -> dict[str, Any]:
        """MAPE and sMAPE of the month-end total forecast 7, 14 and 21 days into each
        complete month of the history (up to `at`, default the newest sample), beside the
        run-rate's, and the intervals' coverage."""
        when = None if at is None else parse_instant(at, what="at")
        dims = _by(by)
        return server.cached(  # type: ignore[no-any-return]
            ("forecast-backtest", dims, history, at),
            lambda s: s.forecast_backtest(by=dims, history=history, at=when),
        )
