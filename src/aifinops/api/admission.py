"""The admission webhook's route: `POST /api/v1/admission` answers the API server's
`AdmissionReview`s from the budget state the scheduler last handed to a `Gatekeeper`.

The route never touches the store: a review is answered from memory in microseconds, well
inside the webhook's 5 s timeout, whatever the store is doing."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aifinops.api.errors import ERROR_RESPONSES, envelope
from aifinops.core.admission import AdmissionConfig, AdmissionState, decide
from aifinops.core.attribution import AttributionRules
from aifinops.errors import AifinopsError

log = logging.getLogger("aifinops.admission")
PATH = "/api/v1/admission"


class Gatekeeper:
    """The budget state and the GPUs admitted since it was refreshed. One lock covers a
    decision and its count, so two reviews at once cannot both take the last GPU of a
    throttled budget."""

    def __init__(
        self,
        config: AdmissionConfig,
        rules: AttributionRules,
        clock: Callable[[], float] = time.time,
    ):
        self.config, self.rules, self.clock = config, rules, clock
        self._lock = threading.Lock()
        self._state: AdmissionState | None = None
        self._admitted: dict[str, int] = {}
        self._since: list[tuple[int, dict[str, int]]] = []  # (when, counts) since the state

    def refresh(self, state: AdmissionState) -> None:
        """Take a new state. Its running counts hold what was admitted up to its
        `counted_to_ms` (all of it when that is None): only later admissions stay counted."""
        with self._lock:
            cut = state.counted_to_ms
            self._state = state
            self._since = [] if cut is None else [(t, c) for t, c in self._since if t > cut]
            self._admitted = {}
            for _, counts in self._since:
                self._add(counts)

    def _add(self, counts: dict[str, int]) -> None:
        for budget, gpus in counts.items():
            self._admitted[budget] = self._admitted.get(budget, 0) + gpus

    def admitted(self) -> dict[str, int]:
        """GPUs admitted per budget since the last refresh."""
        with self._lock:
            return dict(self._admitted)

    def review(self, body: Any) -> dict[str, Any]:
        """The AdmissionReview answering `body` (a `UsageError` if it is not one)."""
        with self._lock:
            now_ms = int(self.clock() * 1000)
            decision = decide(body, self._state, self.config, self.rules, now_ms, self._admitted)
            if decision.counts:
                self._since.append((now_ms, decision.counts))
                self._add(decision.counts)
        response = decision.review["response"]
        if not response["allowed"] or response.get("warnings"):
            _log(body["request"], response["allowed"], decision.reason)
        return decision.review


def _log(request: dict[str, Any], allowed: bool, reason: str) -> None:
    def get(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else None

    meta = get(request.get("object"), "metadata")
    name = request.get("name") or get(meta, "name") or get(meta, "generateName")
    user = get(request.get("userInfo"), "username")
    verb = "allowed" if allowed else "denied"
    log.info("%s pod %s/%s of %s: %s", verb, request.get("namespace"), name, user, reason)


_REVIEW_BODY = {
    "required": True,
    "description": "an admission.k8s.io/v1 AdmissionReview, as the API server sends it",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def admission_router(gatekeeper: Gatekeeper) -> APIRouter:
    """The webhook's route. It takes no token: the API server calls it over TLS (the
    webhook configuration's caBundle pins the server's certificate)."""
    router = APIRouter(tags=["admission"])

    @router.post(
        PATH,
        openapi_extra={"requestBody": _REVIEW_BODY},
        responses={400: ERROR_RESPONSES[400]},
        summary="Answer a validating admission review of a Pod CREATE (GPU budgets)",
    )
    async def admission(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError included
            return envelope(400, "UsageError", f"the body is not JSON ({exc})", "body",
                            "send an admission.k8s.io/v1 AdmissionReview")  # fmt: skip
        try:
            return JSONResponse(gatekeeper.review(body))
        except AifinopsError as error:
            return envelope(
                error.http_status, type(error).__name__, error.message, error.where, error.hint
            )

    return router
