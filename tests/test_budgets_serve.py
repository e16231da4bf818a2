"""Budgets in `aifinops serve` (issue 14), end to end on a real uvicorn: the budgets job
checks on its own, a fired alert reaches a real local webhook (signed), a failed delivery
is retried until delivered, the admission webhook denies from the state the job left, the
alert does not fire again after a restart, /metrics shows the budget, and CRUD works.

The fleet: node `srv` (L4 at $4.00 per GPU-hour), pod `ml/train` (team ml) holding GPU-0
in one-hour samples for the 48 hours up to the current hour. The budget `ml-week` is a
week starting yesterday (UTC), so by now it holds at least 24 sampled hours: $96 or more,
over its $50 limit."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifinops.service import Service
from tests import test_api
from tests.conftest import HOUR, Served, load_facts, sample

serve = test_api.serve  # the fixture: the app on a free loopback port

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
SECRET = "s3cret-for-the-test"


def fleet(svc: Service, now: datetime) -> None:
    end = int(now.replace(minute=0, second=0, microsecond=0).timestamp() * 1000)
    start = end - 48 * HOUR
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 1, "source": "test"}
    pods = [
        {
            "workload_id": "ml/train",
            "kind": "pod",
            "namespace": "ml",
            "name": "train",
            "node_id": "srv",
            "gpu_request": 1,
            "gpu_resource": "nvidia.com/gpu",
            "labels": {"team": "ml"},
            "start_ms": start,
            "source": "test",
        }
    ]
    samples = [
        r
        for t in range(start, end, HOUR)
        for r in sample(t, "srv", "GPU-0", [("ml/train", 1.0, 1.0, 0.5)], HOUR)
    ]
    load_facts(svc, [node], pods, samples)


def review(uid: str, team: str, gpus: int = 1) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{uid}", "namespace": "ml", "labels": {"team": team}},
        "spec": {
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
            ]
        },
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "ml",
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["dev"]},
                "object": pod,
                "dryRun": False,
            },
        }
    ).encode()


def wait(what: str, ok: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = ok()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_budget_job_alert_webhook_admission_restart(
    serve: Any,
    make_service: Callable[..., Service],
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC)
    svc = make_service(PRICES, name="b.duckdb")
    fleet(svc, now)
    svc.close()
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    served.routes["/hook"] = [(500, b"down"), (200, b"ok")]
    yesterday = (now - timedelta(days=1)).isoweekday()
    config = {
        **PRICES,
        "alerts": {"retry_initial": "1s", "check_every": "1m"},
        "budgets": [
            {
                "name": "ml-week",
                "limit": 50,
                "period": "week",
                "resetDay": yesterday,
                "scope": {"teams": ["ml"]},
                "alerts": [
                    {
                        "thresholdPercent": 100,
                        "severity": "critical",
                        "channels": [
                            {
                                "type": "webhook",
                                "config": {"url": served.url("/hook"), "secret_env": "HOOK_SECRET"},
                            }
                        ],
                    }
                ],
                "enforcement": {"action": "block", "gracePeriodMinutes": 0},
            }
        ],
    }
    api = serve(tmp_path / "b.duckdb", config, jobs=True)
    # the first try fails (500), the retry a second later is delivered
    wait("two webhook posts", lambda: len(served.bodies) >= 2)
    first, second = served.bodies[0][1], served.bodies[1][1]
    assert first == second
    event = json.loads(second)
    assert event["budget"] == "ml-week" and event["action"] == "fire"
    period = (now - timedelta(days=1)).date().isoformat()
    assert event["key"] == f"ml-week/{period}T00:00+0000/actual/100"
    headers = dict(served.requests[1][1])
    ts = headers["X-Aifinops-Timestamp"]
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + second, hashlib.sha256).hexdigest()
    assert headers["X-Aifinops-Signature"] == f"sha256={mac}"
    delivered = wait(
        "the delivery recorded",
        lambda: [
            d for d in api.get("/api/v1/alerts/deliveries").json()["items"] if d["delivered_at"]
        ],
    )
    assert delivered[0]["attempts"] == 2 and delivered[0]["last_error"] is None
    # the admission webhook answers from the job's state: team ml is blocked, web is not
    denied = api.post("/api/v1/admission", review("u-1", "ml")).json()["response"]
    assert denied["uid"] == "u-1" and denied["allowed"] is False
    assert "ml-week" in denied["status"]["message"]
    allowed = api.post("/api/v1/admission", review("u-2", "web")).json()["response"]
    assert allowed == {"uid": "u-2", "allowed": True} or allowed["allowed"] is True
    status = api.get("/api/v1/budgets/ml-week/status").json()
    assert status["budgetStatus"] == "exceeded" and status["enforcementActive"] is True
    metrics = api.get("/metrics").text
    assert 'ai_finops_budget_limit{budget="ml-week",currency="USD",period="week"} 50.0' in metrics
    # a restart: the alert is in the store, so it does not fire (or post) again
    api.server.should_exit = True
    api.thread.join(30)
    posts = len(served.bodies)
    again = serve(tmp_path / "b.duckdb", config, jobs=True)
    wait(
        "a budget check",
        lambda: any(
            j["name"] == "budgets" and j["runs"] >= 1
            for j in again.get("/api/v1/jobs").json()["jobs"]
        ),
    )
    time.sleep(2)  # a delivery pass (every 5 s) would have had its chance
    assert len(served.bodies) == posts
    assert [a["state"] for a in again.get("/api/v1/alerts").json()["items"]] == ["firing"]


def test_budget_crud_over_the_api(
    serve: Any, make_service: Callable[..., Service], tmp_path: Path
) -> None:
    svc = make_service(PRICES, name="c.duckdb")
    token = svc.create_token("ops", "admin")
    svc.close()
    api = serve(tmp_path / "c.duckdb", PRICES)
    auth = {"Authorization": f"Bearer {token}"}
    crd = (
        b"apiVersion: gpu-autoscaler.io/v1alpha1\nkind: CostBudget\nmetadata:\n"
        b"  name: ds\nspec:\n  monthlyLimit: 15000\n  scope:\n    teams: [data-science]\n"
    )
    made = httpx.post(
        api.url + "/api/v1/budgets",
        content=crd,
        headers={**auth, "Content-Type": "application/yaml"},
    )
    assert made.status_code == 201 and made.json() == {
        "applied": [{"name": "ds", "outcome": "created"}]
    }
    refused = httpx.post(
        api.url + "/api/v1/budgets", content=crd, headers={"Content-Type": "application/yaml"}
    )
    assert refused.status_code == 401
    bad = httpx.post(api.url + "/api/v1/budgets", content=b'{"name": "x"}', headers=auth)
    assert bad.status_code in (400, 422) and "needs a limit" in bad.json()["error"]["message"]
    got = api.get("/api/v1/budgets/ds", token=token).json()
    assert got["spec"]["monthlyLimit"] == "15000" and got["origin"] == "store"
    put = httpx.put(
        api.url + "/api/v1/budgets/ds",
        headers=auth,
        content=json.dumps({"limit": 100, "period": "day"}).encode(),
    )
    assert put.json() == {"name": "ds", "outcome": "updated"}
    listed = api.get("/api/v1/budgets", token=token, status="true").json()
    assert [
        (i["metadata"]["name"], i["spec"]["limit"], i["status"]["currentSpend"])
        for i in listed["items"]
    ] == [("ds", "100", "0.00")]
    mismatch = httpx.put(
        api.url + "/api/v1/budgets/ds",
        headers=auth,
        content=json.dumps({"name": "other", "limit": 1}).encode(),
    )
    assert mismatch.status_code == 400
    # an applied budget's inline channel may not read the server's secrets
    leak = {"name": "leak", "limit": 1, "alerts": [{"thresholdPercent": 50, "channels": [
        {"type": "pagerduty", "config": {"routing_key_file": "/etc/hostname",
                                         "url": "http://127.0.0.1:9/steal"}}]}]}  # fmt: skip
    refused = httpx.post(api.url + "/api/v1/budgets", content=json.dumps(leak), headers=auth)
    assert refused.status_code == 400
    assert "may not read a secret (config.routing_key_file)" in refused.json()["error"]["message"]
    # the admission webhook: a body over 3 MiB, JSON nested past recursion, a retried review
    big = httpx.post(api.url + "/api/v1/admission", content=b"[" * (3 * 1024 * 1024 + 1))
    assert big.status_code == 413
    deep = httpx.post(api.url + "/api/v1/admission", content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]["message"]
    assert httpx.delete(api.url + "/api/v1/budgets/ds", headers=auth).status_code == 200
    assert api.get("/api/v1/budgets/ds", token=token).status_code == 404
