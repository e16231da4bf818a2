"""One JSON error envelope for every failure: `{"error": {"type", "message", "where",
"hint"}}`, with the HTTP status of the error hierarchy (errors.py)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from aifinops.errors import AifinopsError

log = logging.getLogger("aifinops.api")


def envelope(
    status: int, kind: str, message: str, where: str | None = None, hint: str | None = None
) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "where": where, "hint": hint}}
    return JSONResponse(body, status_code=status)


class ErrorBody(BaseModel):
    type: str
    message: str
    where: str | None = None
    hint: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error the API answers: its kind, what went wrong, where, and what to do."""

    error: ErrorBody


# the error statuses every route may answer, documented with the envelope
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": what}
    for status, what in (
        (400, "a parameter cannot be used (UsageError, ConfigError)"),
        (401, "no token, or one that is not valid"),
        (403, "the token's role may not do this"),
        (404, "no such path"),
        (422, "an input is malformed (InputError)"),
        (500, "an output cannot be written, or a bug"),
        (503, "the store cannot be opened or queried"),
    )
}


class Denied(Exception):
    """A request without the role it needs (401 without a valid token, 403 with one)."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def install(app: FastAPI) -> None:
    @app.exception_handler(AifinopsError)
    async def ours(request: Request, error: AifinopsError) -> JSONResponse:
        return envelope(
            error.http_status, type(error).__name__, error.message, error.where, error.hint
        )

    @app.exception_handler(Denied)
    async def denied(request: Request, error: Denied) -> JSONResponse:
        response = envelope(
            error.status,
            "Unauthorized" if error.status == 401 else "Forbidden",
            error.message,
            request.url.path,
            error.hint,
        )
        if error.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return envelope(
            400,
            "UsageError",
            str(first.get("msg", "invalid request")),
            where,
            "see /docs for this route's parameters",
        )

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        kind = "NotFound" if error.status_code == 404 else "HTTPError"
        return envelope(error.status_code, kind, str(error.detail), request.url.path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return envelope(
            500,
            "InternalError",
            f"{type(error).__name__}: {error}",
            request.url.path,
            "this is a bug: the server's log has the traceback",
        )
