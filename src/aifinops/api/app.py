"""The FastAPI app of `aifinops serve`: every route a few lines over one service call.

Reads are served from the answer cache of the current data version (`server.Server`);
writes take the store for their write, need an `admin` token, and are audited."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from aifinops import __version__
from aifinops.api import errors, opencost
from aifinops.api.errors import Denied
from aifinops.api.server import Server
from aifinops.api.windows import as_text, parse_window
from aifinops.config import Settings
from aifinops.core.access import ANONYMOUS, Caller, identify
from aifinops.core.model import IdlePolicy, SharedGpuPolicy
from aifinops.errors import AifinopsError, UsageError
from aifinops.outputs.csv_cells import csv_text
from aifinops.service import Service

NO_TOKEN_HINT = (
    "create one: aifinops token create --name NAME --role admin (then send it as "
    "'Authorization: Bearer TOKEN')"
)
UPLOAD_LIMIT = 2 * 1024**3  # bytes: one upload, streamed to disk
CHUNK = 1024 * 1024


def create_app(settings: Settings, *, jobs: bool = True, metrics_ttl: float = 10.0) -> FastAPI:
    server = Server(settings, jobs=jobs, metrics_ttl=metrics_ttl)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.scheduler.start()
        yield
        server.close()

    app = FastAPI(
        title="aifinops",
        version=__version__,
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
        description="GPU cost allocation, bills and unit costs (aifinops serve).",
    )
    app.state.server = server
    errors.install(app)
    _routes(app, server)
    from aifinops.api import budgets, forecast, recommend
    from aifinops.api.admission import admission_router

    budgets.install(app, server, viewer, admin)
    recommend.install(app, server, viewer, admin)
    forecast.install(app, server, viewer)
    from aifinops.api import anomalies

    anomalies.install(app, server, viewer)
    app.include_router(admission_router(server.gatekeeper))
    from aifinops.api import dashboard

    dashboard.install(app, server, caller_of)
    return app


# -- who is asking ----------------------------------------------------------------------------


def _caller(request: Request) -> Caller:
    return caller_of(request, None)


def caller_of(request: Request, fallback: str | None) -> Caller:
    """Who sends the request's bearer token (or `fallback`, the dashboard's cookie, where no
    header is sent); anonymous viewer while no token exists."""
    server: Server = request.app.state.server
    live = server.cached(("tokens",), lambda svc: svc.live_tokens())
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else fallback
    found = identify(token, live)
    if token and found is None:
        raise Denied(401, "this token is not valid (unknown or revoked)", NO_TOKEN_HINT)
    if found is not None:
        return found
    if live:
        raise Denied(401, "a token is needed: send 'Authorization: Bearer TOKEN'", NO_TOKEN_HINT)
    return Caller("anonymous", "viewer")  # no token exists yet: reads are open


def viewer(request: Request) -> Caller:
    return _caller(request)


def admin(request: Request) -> Caller:
    caller = _caller(request)
    if caller.may("admin"):
        return caller
    if caller.name == ANONYMOUS.name:
        raise Denied(403, "writes need an admin token, and no token exists", NO_TOKEN_HINT)
    raise Denied(403, f"token {caller.name!r} has role {caller.role}: writes need admin")


Viewer = Annotated[Caller, Depends(viewer)]
Admin = Annotated[Caller, Depends(admin)]


# -- helpers --------------------------------------------------------------------------------


def _window(window: str | None, last: str | None) -> str | None:
    """The API's `window` (OpenCost's grammar) or `last` as the service's START,END."""
    if window and last:
        raise UsageError("give window or last, not both", where="window/last")
    text = window or last
    return as_text(parse_window(text, datetime.now(UTC))) if text else None


def _page(rows: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": rows[offset : offset + limit],
        "total": len(rows),
        "limit": limit,
        "offset": offset,
    }


def _listing(
    rows: list[dict[str, Any]], fmt: str, limit: int, offset: int, name: str
) -> dict[str, Any] | Response:
    """A list as a page of JSON (`items`, `total`, `limit`, `offset`), or all of it as CSV
    (nested values as JSON text)."""
    if fmt == "csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        flat = [
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            for r in rows
        ]
        return _csv(columns, flat, name)
    return _page(rows, limit, offset)


def _csv(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]], name: str) -> Response:
    return PlainTextResponse(
        csv_text(columns, rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


Limit = Annotated[int, Query(ge=1, le=10_000, description="page size")]
FormatQ = Annotated[str, Query(pattern="^(json|csv)$", description="json, or csv (all rows)")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="rows to skip")]
WindowQ = Annotated[
    str | None,
    Query(
        description="today, yesterday, week, lastweek, month, lastmonth, 7d, 24h, or "
        "START,END (RFC 3339 or Unix seconds); default: the 7 days up to the newest sample"
    ),
]
LastQ = Annotated[str | None, Query(description="a window ending now, e.g. 24h, 7d")]


def _routes(app: FastAPI, server: Server) -> None:
    def read(key: Any, compute: Callable[[Service], Any]) -> Any:
        return server.cached(key, compute)

    # -- probes ---------------------------------------------------------------------------
    @app.get("/health", tags=["probes"])
    def health() -> dict[str, Any]:
        """Alive; `replica` names this process and whether it runs the periodic jobs
        (holds the jobs' lease, as it last saw: no store read)."""
        lease = server.lease
        return {"status": "ok", "version": __version__,
                "replica": {"id": server.replica,
                            "runs_jobs": lease is not None and lease.held}}  # fmt: skip

    @app.get(
        "/ready",
        tags=["probes"],
        responses={
            503: {
                "description": "a source is stale: the body names it",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    def ready() -> JSONResponse:
        """Ready when every configured source is fresh: its last success within twice its
        interval. 503 names the stale ones."""
        status = read(("sources",), lambda s: s.sources_status())
        stale = [s["name"] for s in status if s["state"] != "ok" or s.get("stale")]
        body = {"ready": not stale, "stale": stale, "sources": status}
        return JSONResponse(body, status_code=503 if stale else 200)

    @app.get("/metrics", tags=["probes"], response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        """Prometheus' text format (the version the scraper accepts): costs, idle,
        efficiency, unit costs, sources' freshness, and the server's own request and ingest
        counters."""
        body, media_type = server.metrics.text(request.headers.get("accept"))
        return Response(body, media_type=media_type)

    @app.middleware("http")
    async def timed(request: Request, call_next: Callable[[Request], Any]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        server.metrics.query_seconds.labels(path).observe(time.perf_counter() - started)
        return response

    # -- costs ----------------------------------------------------------------------------
    @app.get("/api/v1/costs/summary", tags=["costs"])
    def costs_summary(_: Viewer, window: WindowQ = None, last: LastQ = None) -> dict[str, Any]:
        """Cost by team for a window."""
        win = _window(window, last)
        report = read(("cost", win, ("team",)), lambda s: s.cost(window=win, by=["team"]))
        return report.to_dict()

    @app.get("/api/v1/costs/team/{team}", tags=["costs"])
    def costs_team(
        team: str,
        _: Viewer,
        window: WindowQ = None,
        last: LastQ = None,
        by: str = "namespace,workload",
    ) -> dict[str, Any]:
        """One team's cost, by namespace and workload (or `by`)."""
        win, dims = _window(window, last), tuple(by.split(","))
        return read(
            ("team", team, win, dims), lambda s: s.cost(window=win, by=dims, team=team)
        ).to_dict()

    @app.get("/api/v1/cost", tags=["costs"], response_model=None)
    def cost(
        _: Viewer,
        by: str = "team",
        window: WindowQ = None,
        last: LastQ = None,
        step: str | None = None,
        idle: IdlePolicy | None = None,
        shared_gpu: SharedGpuPolicy | None = None,
        team: str | None = None,
        unit: str | None = None,
        source: str = "telemetry",
        reconciled: bool = False,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> dict[str, Any] | Response:
        """What `aifinops cost` answers, with all its options (`reconciled`: each node
        scaled to its billed cost, as `cost --reconciled`)."""
        win = _window(window, last)
        if reconciled:
            given = [n for n, v in (("step", step), ("unit", unit), ("team", team)) if v]
            if source != "telemetry":
                given.append("source")
            if given:
                raise UsageError(f"{', '.join(given)} cannot go with reconciled",
                                 where="reconciled")  # fmt: skip
            return _reconciled(win, tuple(by.split(",")), idle, shared_gpu, format, limit, offset)
        q = dict(
            window=win,
            by=tuple(by.split(",")),
            step=step,
            idle=idle,
            shared_gpu=shared_gpu,
            team=team,
            unit=unit,
            source=source,
        )
        report = read(("cost", tuple(sorted(q.items()))), lambda s: s.cost(**q))
        if format == "csv":
            columns, rows = report.table()
            return _csv(columns, rows, "cost.csv")
        out = report.to_dict()
        out.update(_page(out.pop("rows"), limit, offset))
        return out

    def _reconciled(win: str | None, dims: tuple[str, ...], idle: Any, shared_gpu: Any,
                    fmt: str, limit: int, offset: int) -> dict[str, Any] | Response:  # fmt: skip
        report = read(("reconciled", win, dims, idle, shared_gpu),
                      lambda s: s.reconcile(window=win, by=dims, idle=idle,
                                            shared_gpu=shared_gpu))  # fmt: skip
        out = report.to_dict()
        if fmt == "csv":
            rows = [{**r["key"], **{k: v for k, v in r.items() if k != "key"}}
                    for r in out["rows"]]  # fmt: skip
            columns = [*dims, "list_cost", "billed_cost", "difference", "unbilled_cost"]
            return _csv(columns, rows, "reconciled.csv")
        out.update(_page(out.pop("rows"), limit, offset))
        return out

    @app.get("/api/v1/allocation", tags=["opencost"])
    def allocation(
        _: Viewer,
        window: Annotated[
            str, Query(description="OpenCost's window: 7d, today, lastweek, START,END")
        ] = "24h",
        aggregate: str = "namespace",
        step: str | None = None,
        idle: bool = True,
        shareIdle: bool = False,
    ) -> dict[str, Any]:
        """OpenCost's allocation API: one map of name -> allocation per step."""
        win = _window(window, None)
        dims = opencost.dimensions(aggregate, server.settings.attribution.rules().label_keys)
        by = dims or ("namespace",)
        policy = "weighted" if shareIdle else "separate"
        report = read(
            ("alloc", win, by, step, policy),
            lambda s: s.cost(window=win, by=by, step=step, idle=policy),
        )
        return opencost.response(report, dims, idle)

    @app.get("/api/v1/gpu/utilization", tags=["costs"])
    def gpu_utilization(_: Viewer) -> dict[str, Any]:
        """Each GPU's newest sample (within 15 minutes of the newest in the store)."""
        gpus = read(("util",), lambda s: s.gpu_utilization())
        return {"gpus": gpus, "count": len(gpus)}

    @app.get("/api/v1/energy", tags=["costs"], response_model=None)
    def energy(
        _: Viewer,
        window: WindowQ = None,
        last: LastQ = None,
        format: FormatQ = "json",
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> dict[str, Any] | Response:
        win = _window(window, last)
        rows = read(("energy", win), lambda s: s.energy(window=win))
        return _listing(rows, format, limit, offset, "energy.csv")

    # -- sources and jobs -----------------------------------------------------------------
    @app.get("/api/v1/sources/status", tags=["sources"], response_model=None)
    def sources_status(
        _: Viewer, format: FormatQ = "json", limit: Limit = 1000, offset: Offset = 0
    ) -> dict[str, Any] | Response:
        rows = read(("sources",), lambda s: s.sources_status())
        return _listing(rows, format, limit, offset, "sources.csv")

    @app.get("/api/v1/jobs", tags=["sources"])
    def jobs(_: Viewer) -> dict[str, Any]:
        """Each job's last run, and the jobs' lease: which replica holds it (and so runs
        the leased jobs) and whether this one does."""
        return {"jobs": server.scheduler.status(), "lease": server.lease_status()}

    # -- bills and prices -----------------------------------------------------------------
    @app.get("/api/v1/bills/summary", tags=["bills"], response_model=None)
    def bills_summary(
        _: Viewer,
        by: str = "provider",
        window: WindowQ = None,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> dict[str, Any] | Response:
        win, dims = _window(window, None), tuple(by.split(","))
        rows = read(("bills", win, dims), lambda s: s.bills_summary(by=dims, window=win))
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        if format == "csv":
            flat = [{**r["key"], **{k: v for k, v in r.items() if k != "key"}} for r in rows]
            cols = [*dims, "billed_cost", "effective_cost", "list_cost", "currency"]
            return _csv(list(dict.fromkeys(cols)), flat, "bills.csv")
        return _page(rows, limit, offset)

    @app.get("/api/v1/tags/report", tags=["bills"], response_model=None)
    def tags_report(
        _: Viewer,
        required: str | None = None,
        window: WindowQ = None,
        top: Annotated[int, Query(ge=1, le=1000)] = 10,
        format: FormatQ = "json",
    ) -> dict[str, Any] | Response:
        """Tag coverage of the bills; as CSV, the largest untagged resources (as the CLI)."""
        win = _window(window, None)
        tags = tuple(required.split(",")) if required else None
        report = read(("tags", win, tags, top),
                      lambda s: s.tags_report(required=tags, window=win, top=top))  # fmt: skip
        if format == "csv":
            columns = ["resource_id", "provider", "service", "billed_cost", "currency"]
            return _csv(columns, report["largest_untagged"], "untagged.csv")
        return report  # type: ignore[no-any-return]

    @app.get("/api/v1/prices", tags=["prices"], response_model=None)
    def prices(
        _: Viewer,
        gpu: str | None = None,
        instance_type: str | None = None,
        provider: str | None = None,
        region: str | None = None,
        spot: bool = False,
        format: FormatQ = "json",
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> dict[str, Any] | Response:
        f = dict(gpu=gpu, instance_type=instance_type, provider=provider, region=region, spot=spot)
        rows = read(("prices", tuple(f.items())), lambda s: s.price_offers(**f))
        return _listing(rows, format, limit, offset, "prices.csv")

    @app.get("/api/v1/prices/compare", tags=["prices"], response_model=None)
    def prices_compare(
        _: Viewer,
        gpu: str,
        spot: bool = False,
        format: FormatQ = "json",
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> dict[str, Any] | Response:
        """One GPU model's offers across providers, cheapest per GPU-hour first."""
        rows = read(("prices", gpu, spot), lambda s: s.price_offers(gpu=gpu, spot=spot))
        return _listing(rows, format, limit, offset, "compare.csv")

    @app.get("/api/v1/prices/missing", tags=["prices"], response_model=None)
    def prices_missing(
        _: Viewer, format: FormatQ = "json", limit: Limit = 1000, offset: Offset = 0
    ) -> dict[str, Any] | Response:
        rows = read(("missing",), lambda s: s.missing_prices())
        return _listing(rows, format, limit, offset, "missing-prices.csv")

    # -- exports --------------------------------------------------------------------------
    @app.get("/api/v1/exports/focus", tags=["exports"], response_class=FileResponse)
    def export_focus(
        _: Viewer,
        window: WindowQ = None,
        last: LastQ = None,
        step: str = "1h",
        format: Annotated[str, Query(pattern="^(csv|parquet)$")] = "csv",
    ) -> Any:
        """The allocated chargeback as a FOCUS 1.2 dataset (CSV or Parquet)."""
        win = _window(window, last)
        folder = Path(tempfile.mkdtemp(prefix="aifinops-export-"))
        path = folder / f"focus.{format}"
        with server.reading() as svc:
            svc.export_focus(path, window=win, step=step)
        return FileResponse(
            path, filename=path.name, background=BackgroundTask(shutil.rmtree, folder, True)
        )

    @app.get("/api/v1/exports/chargeback", tags=["exports"])
    def export_chargeback(_: Viewer, month: str, by: str = "team") -> Response:
        """The month's chargeback table for finance (CSV; rows add up to TOTAL)."""
        dims = tuple(by.split(","))
        rows = read(
            ("chargeback", month, dims), lambda s: s.export_chargeback(None, month=month, by=dims)
        )
        return _csv(list(rows[0]) if rows else [*dims], rows, f"chargeback-{month}.csv")

    # -- writes ---------------------------------------------------------------------------
    @app.post("/api/v1/ingest/{kind}", tags=["ingest"])
    async def ingest(kind: str, request: Request, caller: Admin) -> dict[str, Any]:
        """Upload one input of a kind `aifinops ingest` knows: the request body is the
        file (a bill, a scrape, a dump; an nvidia-smi log bundle as .tar.gz or .zip).
        Options as query parameters (`at`, `pod`, `server`, `model`, `interval`, `host`,
        `timezone`, `replace`)."""
        options = dict(request.query_params)
        name = Path(options.pop("filename", f"upload-{kind}")).name
        folder = Path(tempfile.mkdtemp(prefix="aifinops-upload-"))
        try:
            path = await _receive(request, folder / name)
            if kind == "nvidia-smi" and name.endswith((".tar.gz", ".tgz", ".zip", ".tar")):
                path = _unpack(path, folder / "bundle")
            if "replace" in options:
                options["replace"] = options["replace"].lower() in ("1", "true", "yes")

            def store() -> list[Any]:
                with server.writing() as svc:
                    results = svc.ingest_file(kind, path, **options)
                    done = "; ".join(f"{r.status} {r.rows} rows" for r in results)
                    svc.audit(caller, f"ingest {kind}", name, 200, done)
                for r in results:
                    server.metrics.ingest_rows.labels(kind).inc(r.rows)
                return results

            results = await _write(server, caller, f"ingest {kind}", name, kind, store)
            return {"results": [_result(r) for r in results]}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/api/v1/agent/segments", tags=["ingest"])
    async def agent_segment(request: Request, caller: Admin) -> dict[str, Any]:
        """One closed spool segment of the node agent (NDJSON). The same segment sent
        twice is stored once (the agent retries until it is acknowledged)."""
        folder = Path(tempfile.mkdtemp(prefix="aifinops-segment-"))
        try:
            path = await _receive(request, folder / "segment.jsonl")

            def store() -> Any:
                with server.writing() as svc:
                    result = svc.ingest_agent_segment(path)
                    done = f"{result.status} {result.rows} rows"
                    svc.audit(caller, "agent segment", result.node, 200, done)
                server.metrics.ingest_rows.labels("agent").inc(result.rows)
                return result

            return _result(await _write(server, caller, "agent segment", None, "agent", store))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.get("/api/v1/audit", tags=["admin"])
    def audit(_: Admin, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """The audit log of writes, newest first."""
        with server.reading() as svc:
            return {"entries": svc.audit_log(limit, offset), "limit": limit, "offset": offset}

    @app.get("/api/v1/tokens", tags=["admin"])
    def tokens(_: Admin) -> dict[str, Any]:
        """The API tokens' names, roles and dates (never the tokens)."""
        return {"tokens": read(("token-list",), lambda s: s.tokens())}


async def _write(server: Server, caller: Caller, action: str, target: str | None, kind: str,
                 work: Callable[[], Any]) -> Any:  # fmt: skip
    """Run a write off the event loop; a failed one is counted and audited, then raised."""
    try:
        return await run_in_threadpool(work)
    except AifinopsError as error:
        server.metrics.ingest_failures.labels(kind).inc()
        status, message = error.http_status, error.message[:500]

        def audit() -> None:
            with server.writing() as svc:
                svc.audit(caller, action, target, status, message)

        await run_in_threadpool(audit)
        raise


async def _receive(request: Request, path: Path) -> Path:
    """Stream the request body to `path`, never whole in memory, refusing what is larger
    than UPLOAD_LIMIT."""
    size = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > UPLOAD_LIMIT:
                raise UsageError(
                    f"the upload is larger than {UPLOAD_LIMIT // 1024**2} MiB",
                    where=path.name,
                    hint="split it, or ingest it with the CLI",
                )
            out.write(chunk)
    if size == 0:
        raise UsageError(
            "the upload is empty", where=path.name, hint="send the file as the request body"
        )
    return path


def _unpack(archive: Path, folder: Path) -> Path:
    """An nvidia-smi log bundle unpacked into `folder` (members kept inside it)."""
    folder.mkdir()
    try:
        shutil.unpack_archive(str(archive), str(folder), filter="data")  # type: ignore[call-arg]
    except (shutil.ReadError, ValueError, OSError) as error:
        raise UsageError(
            f"cannot unpack the bundle: {error}",
            where=archive.name,
            hint="send a .tar.gz, .tar or .zip of the log directory",
        ) from error
    return folder


def _result(r: Any) -> dict[str, Any]:
    return {
        "source": r.source,
        "status": r.status,
        "rows": r.rows,
        "node": r.node,
        "workloads": r.workloads,
        "notes": r.notes,
    }
