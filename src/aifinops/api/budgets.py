"""The budget routes of `aifinops serve`: CRUD under /api/v1/budgets (a CostBudget document,
the plain shape, or a list, as JSON or YAML), each budget's status, a check on demand, and
the alerts' history and deliveries."""

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from aifinops.api.server import Server
from aifinops.core.access import Caller
from aifinops.core.budgets import in_range
from aifinops.core.windows import parse_instant
from aifinops.errors import UsageError

AtQ = Annotated[str | None, Query(description="evaluate as of this instant (RFC 3339)")]
BODY_LIMIT = 1024 * 1024


def _at(text: str | None) -> datetime | None:
    return in_range(parse_instant(text, what="at"), "at") if text else None


def _now_key(at: str | None) -> str:
    """A cache key for an answer as of `at`, or as of now: this minute (a status moves with
    the clock, not only with the data)."""
    return at or time.strftime("now %Y-%m-%dT%H:%M", time.gmtime())


async def _documents(request: Request) -> list[Any]:
    """The request body's budget documents: JSON (an object or a list) or YAML (one or
    more documents, as `kubectl` writes them)."""
    body = await request.body()
    if len(body) > BODY_LIMIT:
        raise UsageError("the body is larger than 1 MiB", where="body")
    kind = request.headers.get("content-type", "")
    try:
        if "yaml" in kind:
            from aifinops.config import yaml_documents

            return yaml_documents(body.decode("utf-8-sig"))
        doc = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:  # json and yaml errors are ValueErrors
        raise UsageError(
            f"the body is not valid {'YAML' if 'yaml' in kind else 'JSON'}: {exc}", where="body"
        ) from None
    except Exception as exc:  # yaml.YAMLError
        raise UsageError(f"the body is not valid YAML: {exc}", where="body") from None
    if doc is None:
        raise UsageError(
            "the body holds no budget",
            where="body",
            hint="send a CostBudget document, or {name, limit, ...}",
        )
    return doc if isinstance(doc, list) else [doc]


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

    async def write(
        caller: Caller, action: str, target: str | None, work: Callable[[Any], Any]
    ) -> Any:
        def run() -> Any:
            with server.writing() as svc:
                out = work(svc)
                svc.audit(caller, action, target, 200, None)
            return out

        return await run_in_threadpool(run)

    @app.get("/api/v1/budgets", tags=["budgets"])
    def budgets(_: Viewer, status: bool = False, at: AtQ = None) -> dict[str, Any]:
        """Every budget as a CostBudget document, where it is kept (`config` or `store`),
        and with `status=true` its status (as of `at`, default now)."""
        items = read(
            ("budgets",), lambda s: [{**b.to_document(), "origin": o} for b, o in s.budget_list()]
        )
        if status:
            found = {
                s["name"]: s
                for s in read(
                    ("budget-status", _now_key(at)),
                    lambda s: [x.to_dict() for x in s.budget_statuses(_at(at))],
                )
            }
            items = [{**i, "status": found.get(i["metadata"]["name"])} for i in items]
        return {"items": items, "total": len(items)}

    @app.post("/api/v1/budgets", tags=["budgets"], status_code=201)
    async def apply(request: Request, caller: Admin) -> dict[str, Any]:
        """Create or replace budgets (JSON or YAML body; all checked before any is kept)."""
        docs = await _documents(request)
        done = await write(caller, "budget apply", None, lambda s: s.apply_budgets(docs, "body"))
        return {"applied": [{"name": a.name, "outcome": a.outcome} for a in done]}

    @app.get("/api/v1/budgets/{name}", tags=["budgets"])
    def budget(name: str, _: Viewer) -> dict[str, Any]:
        found, origin = read(("budget", name), lambda s: s.budget(name))
        return {**found.to_document(), "origin": origin}

    @app.put("/api/v1/budgets/{name}", tags=["budgets"])
    async def replace(name: str, request: Request, caller: Admin) -> dict[str, Any]:
        """Create or replace one budget; the document's name, if it gives one, must match."""
        docs = await _documents(request)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise UsageError("PUT takes one budget document", where="body")
        doc = dict(docs[0])
        if "spec" in doc or "kind" in doc:
            meta = dict(doc.get("metadata") or {})
            given = meta.setdefault("name", name)
            doc["metadata"] = meta
        else:
            given = doc.setdefault("name", name)
        if given != name:
            raise UsageError(
                f"the document names budget {given!r}, the path {name!r}", where="body"
            )
        done = await write(caller, "budget apply", name, lambda s: s.apply_budgets([doc], "body"))
        return {"name": name, "outcome": done[0].outcome}

    @app.delete("/api/v1/budgets/{name}", tags=["budgets"])
    async def delete(name: str, caller: Admin) -> dict[str, Any]:
        await write(caller, "budget delete", name, lambda s: s.delete_budget(name))
        return {"name": name, "outcome": "deleted"}

    @app.get("/api/v1/budgets/{name}/status", tags=["budgets"])
    def budget_status(name: str, _: Viewer, at: AtQ = None) -> dict[str, Any]:
        """currentSpend, percentageUsed, budgetStatus, projectedPeriodSpend (with its 80 %
        and 95 % intervals and the day the limit is expected to be crossed), daysRemaining,
        alertsFired, enforcementActive, breakdown by team / model / node."""

        def status(s: Any) -> dict[str, Any]:
            return s.budget_statuses(_at(at), [name])[0].to_dict()  # type: ignore[no-any-return]

        return read(("budget-status", name, _now_key(at)), status)  # type: ignore[no-any-return]

    @app.post("/api/v1/budgets/check", tags=["budgets"])
    async def check(caller: Admin, dry_run: bool = False, at: AtQ = None) -> dict[str, Any]:
        """Check every budget now (or at `at`): alerts over their threshold fire once per
        period and are queued for their channels (sent by the server's alerts job); with
        `dry_run=true` nothing is kept or sent and `outgoing` shows what would be."""
        if dry_run:

            def shown(s: Any) -> dict[str, Any]:
                return s.check_budgets(_at(at), dry_run=True).to_dict()  # type: ignore[no-any-return]

            return await run_in_threadpool(lambda: read(("budget-check", _now_key(at)), shown))
        result = await write(caller, "budget check", None, lambda s: s.check_budgets(_at(at)))
        if at is None:  # the webhook and /metrics follow now, never a replayed instant
            server.refresh_gates(result)
        return result.to_dict()  # type: ignore[no-any-return]

    @app.get("/api/v1/alerts", tags=["budgets"])
    def alerts(_: Viewer, budget: str | None = None) -> dict[str, Any]:
        """Every alert that fired (one per budget, period, basis and threshold), newest
        first, with its state (firing or resolved)."""
        return {"items": read(("alerts", budget), lambda s: s.budget_alerts(budget))}

    @app.get("/api/v1/alerts/deliveries", tags=["budgets"])
    def deliveries(_: Viewer) -> dict[str, Any]:
        """Each alert event's delivery to each channel: attempts, last error, when it
        was delivered or is tried next."""
        return {"items": read(("deliveries",), lambda s: s.alert_deliveries())}
