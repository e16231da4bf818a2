"""The anomalies' route: the steps of a window whose spend, GPU-hours, cost per 1M tokens
or idle share left their band, each with its drill-down (the same call as the CLI's)."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# Viewer is local to `install`

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from aifinops.api.server import Server
from aifinops.core.access import Caller


def install(app: FastAPI, server: Server, viewer: Callable[..., Caller]) -> None:
    Viewer = Annotated[Caller, Depends(viewer)]

    @app.get("/api/v1/anomalies", tags=["anomalies"])
    def anomalies(
        _: Viewer,
        window: str | None = None,
        last: str | None = None,
        by: str | None = None,
        metric: str = "spend",
    ) -> dict[str, Any]:
        """Each complete step of the window (default: the 7 days up to the newest sample;
        hourly for 2 days or less) whose `metric` (spend, gpu_hours, cost_per_1m_tokens,
        idle_share; billed: the stored bills' EffectiveCost per day) left its band, by `by`
        (default team; billed: provider, account, sub_account or service, default
        provider); each with its contributors (scope -> workload -> node; billed: scope ->
        sku -> resource), their parts of the jump (summing to it) and their shares and
        tags."""
        return server.cached(  # type: ignore[no-any-return]
            ("anomalies", window, last, by, metric),
            lambda s: s.anomalies(window=window, last=last, by=by, metric=metric).to_dict(),
        )
