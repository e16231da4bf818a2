"""The dashboard of `aifinops serve`: server-rendered pages (Jinja2) at `/`, `/costs`,
`/gpus`, ..., each with its JSON twin (`/index.json`, `/costs.json`, ...) from the same
build (`pages.build`), and a vendored chart library (uPlot, committed with its licence:
nothing is fetched from elsewhere).

A browser signs in by pasting an API token at `/login`: it is kept in an HTTP-only,
same-site cookie, and read as the API reads its `Authorization` header (while no token
exists, pages are open to read, as the API is). Viewers see; admins also act (dismiss or
apply a recommendation), through forms that carry a token derived from theirs, so that
another site cannot post on their behalf."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from aifinops import __version__
from aifinops.api import pages
from aifinops.api.errors import Denied
from aifinops.api.server import Server
from aifinops.core.access import Caller
from aifinops.errors import AifinopsError, UsageError

COOKIE = "aifinops_token"
HERE = Path(__file__).parent
ACTIONS = {"dismiss": "dismissed", "apply": "applied", "reopen": "open"}
VISITED = 3600.0  # seconds: a view asked for this recently is kept warm
WARM_GAP = 60.0  # seconds between two warmings after data changes


def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({"cell": cell, "money": _money, "share": _share, "when": _when})
    env.globals.update({"PAGES": pages.PAGES, "version": __version__})
    return env


def _money(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.2f}"


def _share(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f} %"


def _when(value: Any) -> str:
    if not value:
        return "–"
    return str(value).replace("T", " ").replace("Z", " UTC").replace(":00 UTC", " UTC")


def cell(value: Any, kind: str) -> str:
    """A table cell's text for its column's kind."""
    if value is None:
        return "–"
    if kind == "money":
        return _money(value)
    if kind == "share":
        return _share(value)
    if kind == "hours":
        return f"{float(value):,.1f}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "number":
        return f"{float(value):,.2f}".rstrip("0").rstrip(".")
    if kind == "when":
        return _when(value)
    return str(value)


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"aifinops dashboard form", hashlib.sha256).hexdigest()[:32]


def install(app: FastAPI, server: Server, caller_of: Callable[[Request, str | None], Caller]
            ) -> None:  # fmt: skip
    """The pages, their twins, sign-in and the admins' forms. `caller_of(request, token)`
    identifies a caller as the API does, with the cookie's token where no header is sent."""
    env = _environment()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def who(request: Request) -> Caller:
        return caller_of(request, request.cookies.get(COOKIE))

    def render(name: str, status: int = 200, **data: Any) -> HTMLResponse:
        html = env.get_template(f"{name}.html").render(**data)
        return HTMLResponse(html, status_code=status)

    def base(request: Request, caller: Caller | None) -> dict[str, Any]:
        cookie = request.cookies.get(COOKIE)
        return {"user": caller, "path": request.url.path,
                "csrf": csrf_token(cookie) if cookie else None}  # fmt: skip

    visits: dict[tuple[str, pages.View], float] = {}  # a view -> when it was last asked for
    warmed: dict[str, Any] = {"version": None, "at": None}

    def page_data(name: str, request: Request) -> dict[str, Any]:
        view = pages.View.read(dict(request.query_params))
        visits[(name, view)] = time.monotonic()
        return page(name, view)

    def page(name: str, view: pages.View) -> dict[str, Any]:
        extent = server.cached(("extent",), lambda svc: svc.data_extent())
        at = pages.as_of(extent, datetime.now(UTC))

        def keep(key: Any, compute: Callable[[], Any]) -> Any:
            return server.cached(("page part", key), lambda _: compute())

        return server.cached(
            ("page", name, view, at), lambda svc: pages.build(name, svc, view, at, keep)
        )

    def warm(version: Any) -> str | None:
        """Pages worked out before anyone asks: at start, each page with its default
        filters; after a change of the data, the views asked for in the last
        `VISITED` seconds, at most once each `WARM_GAP` seconds (a collector writing every
        30 s does not keep the store busy with pages nobody looks at)."""
        now = time.monotonic()
        for key, seen in list(visits.items()):
            if now - seen > VISITED:
                visits.pop(key, None)
        if warmed["version"] == version:
            return None
        if warmed["at"] is None:
            views = [(name, pages.View()) for name, _, _ in pages.PAGES]
        elif now - warmed["at"] < WARM_GAP:
            return None
        else:
            views = list(visits)
        for name, view in views:
            with suppress(AifinopsError):  # the page says why when it is asked for
                page(name, view)
        warmed.update(version=version, at=now)
        return f"{len(views)} page(s) warmed" if views else None

    if server.jobs:
        server.warmers.append(warm)

    def denied(request: Request, exc: Denied) -> Response:
        if exc.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return render("error", exc.status, **base(request, None), title="Not allowed",
                      message=exc.message, hint=exc.hint)  # fmt: skip

    def add_page(name: str, path: str) -> None:
        twin = "/index.json" if path == "/" else f"{path}.json"

        async def html_page(request: Request) -> Response:
            try:
                caller = who(request)
                data = await run_in_threadpool(page_data, name, request)
            except Denied as exc:
                return denied(request, exc)
            except AifinopsError as exc:
                return render("error", exc.http_status, **base(request, None),
                              title=pages.TITLES[name], **_problem(exc))  # fmt: skip
            view = pages.View.read(dict(request.query_params))
            return render(
                name, **base(request, caller), data=data, view=view, twin=twin, title=data["title"]
            )

        async def json_page(request: Request) -> Response:
            who(request)  # Denied is answered by the API's handler (401/403 as JSON)
            return JSONResponse(await run_in_threadpool(page_data, name, request))

        html_page.__doc__ = f"The dashboard's {pages.TITLES[name].lower()} page (HTML)."
        json_page.__doc__ = f"The dashboard's {pages.TITLES[name].lower()} page as JSON."
        app.add_api_route(path, html_page, methods=["GET"], include_in_schema=False,
                          response_class=HTMLResponse, name=f"page_{name}")  # fmt: skip
        app.add_api_route(twin, json_page, methods=["GET"], tags=["dashboard"],
                          name=f"page_{name}_json")  # fmt: skip

    for name, path, _ in pages.PAGES:
        add_page(name, path)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render("login", **base(request, None), next=_local(next), error=None)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()] = "",
              next: Annotated[str, Form()] = "/") -> Response:  # fmt: skip
        token = token.strip()
        try:
            if not token:
                raise UsageError("paste a token", where="token")
            caller = caller_of(request, token)
        except (Denied, UsageError) as exc:
            message = exc.message if isinstance(exc, Denied) else str(exc)
            return render("login", 401, **base(request, None), next=_local(next), error=message)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")  # fmt: skip
        del caller
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.post("/recommendations/{finding}/{action}", include_in_schema=False)
    async def act(request: Request, finding: str, action: str,
                  csrf: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                  back: Annotated[str, Form()] = "/recommendations") -> Response:  # fmt: skip
        cookie = request.cookies.get(COOKIE)
        try:
            caller = who(request)
            if not cookie or not hmac.compare_digest(csrf, csrf_token(cookie)):
                raise Denied(403, "this form is not from this dashboard (sign in again)")
            if not caller.may("admin"):
                raise Denied(403, f"{caller.name!r} has role {caller.role}: acting needs admin")
            status = ACTIONS.get(action)
            if status is None:
                raise UsageError(f"unknown action {action!r}", where="path",
                                 hint="dismiss, apply or reopen")  # fmt: skip
            if action == "dismiss" and not reason.strip():
                raise UsageError("a dismissal needs a reason", where="reason")
        except Denied as exc:
            return denied(request, exc)
        except UsageError as exc:
            return render("error", 400, **base(request, None), title="Recommendations",
                          **_problem(exc))  # fmt: skip

        def run() -> None:
            with server.writing() as svc:
                svc.set_finding_status(finding, status, reason.strip() or None, caller.name)
                svc.audit(caller, f"recommendation {action}", finding, 200, None)

        try:
            await run_in_threadpool(run)
        except AifinopsError as exc:
            return render("error", exc.http_status, **base(request, None),
                          title="Recommendations", **_problem(exc))  # fmt: skip
        return RedirectResponse(_local(back), status_code=303)


def _problem(exc: AifinopsError) -> dict[str, Any]:
    where = f"{exc.where}: " if exc.where else ""
    return {"message": where + exc.message, "hint": exc.hint}


def _local(target: str) -> str:
    """A redirect target on this site only (a path, never another host)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
