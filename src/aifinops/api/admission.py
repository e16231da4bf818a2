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
MAX_BODY = 3 * 1024 * 1024  # bytes: the API server caps a request body at 3 MiB too
SEEN = 4096  # reviews remembered by uid: a retried review is answered, never counted twice


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
        # uid -> the answer since the last refresh; the uids counted; oldest first
        self._answered: dict[str, dict[str, Any]] = {}
        self._counted: dict[str, None] = {}

    def refresh(self, state: AdmissionState) -> None:
        """Take a new state. Its running counts hold what was admitted up to its
        `counted_to_ms` (all of it when that is None): only later admissions stay counted."""
        with self._lock:
            cut = state.counted_to_ms
            self._state = state
            self._answered = {}
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
        """The AdmissionReview answering `body` (a `UsageError` if it is not one). A review
        whose uid was answered since the last refresh (the API server retries one that
        timed out) gets the same answer; a uid is counted once, across refreshes too."""
        with self._lock:
            seen = _retry_key(body)
            if seen is not None and seen in self._answered:
                return self._answered[seen]
            now_ms = int(self.clock() * 1000)
            decision = decide(body, self._state, self.config, self.rules, now_ms, self._admitted)
            uid = decision.review["response"]["uid"]
            if decision.counts and uid not in self._counted:
                self._since.append((now_ms, decision.counts))
                self._add(decision.counts)
                self._counted[uid] = None
                while len(self._counted) > SEEN:
                    self._counted.pop(next(iter(self._counted)))
            if seen is not None:
                self._answered[seen] = decision.review
                while len(self._answered) > SEEN:
                    self._answered.pop(next(iter(self._answered)))
        response = decision.review["response"]
        if not response["allowed"] or response.get("warnings"):
            _log(body["request"], response["allowed"], decision.reason)
        return decision.review


def _retry_key(body: Any) -> str | None:
    """The uid of a review that counts (not a dry run), where it has one: a retry of the
    same request has the same uid. A dry run is decided afresh each time (it counts
    nothing)."""
    request = body.get("request") if isinstance(body, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        return None
    return None if request.get("dryRun") else request["uid"]


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
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                return envelope(413, "UsageError", "the review is larger than 3 MiB", "body",
                                "the API server sends a Pod's review well under that")  # fmt: skip
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return envelope(400, "UsageError", f"the body is not JSON ({why})", "body",
                            "send an admission.k8s.io/v1 AdmissionReview")  # fmt: skip
        try:
            return JSONResponse(gatekeeper.review(body))
        except AifinopsError as error:
            return envelope(
                error.http_status, type(error).__name__, error.message, error.where, error.hint
            )

    return router
