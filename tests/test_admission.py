"""Budget enforcement at pod admission: real AdmissionReview requests (tests/data/admission,
one pod per case, see SOURCES.md) answered by `core.admission.decide`, the `Gatekeeper`'s
counts, the route served by uvicorn over HTTPS, and the deploy manifests.

The budget in most cases: `ml-team`, scope team ml, spend 10,250.00 USD of a 10,000.00 USD
limit. Every expected answer below is written out by hand."""

from __future__ import annotations

import copy
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from aifinops.api.admission import Gatekeeper, admission_router
from aifinops.core.admission import (
    AdmissionConfig,
    AdmissionState,
    Gate,
    decide,
    device_count,
    pod_gpus,
)
from aifinops.core.attribution import AttributionRules
from aifinops.core.budgets import parse_budget
from aifinops.errors import InputError, UsageError
from tests.conftest import T0, free_port, need_binary

DATA = Path(__file__).parent / "data" / "admission"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
RULES = AttributionRules()
NOW = T0 + 3_600_000
API = "admission.k8s.io/v1"

BLOCKED = (
    "budget ml-team exceeded: spend 10,250.00 USD of limit 10,000.00 USD; new GPU pods are blocked"
)


def load(name: str) -> dict[str, Any]:
    review: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return review


def gate(**kw: Any) -> Gate:
    fields: dict[str, Any] = {
        "budget": "ml-team", "wants": {"team": frozenset({"ml"})}, "action": "block",
        "mode": "enforce", "active": True, "spend": Decimal("10250"),
        "limit": Decimal("10000.00"), "currency": "USD", "max_gpus": None, "running_gpus": 3,
    }  # fmt: skip
    return Gate(**{**fields, **kw})


def state(*gates: Gate, age_s: float = 60) -> AdmissionState:
    return AdmissionState(gates, NOW - int(age_s * 1000))


def answer(name_or_review: str | dict[str, Any], st: AdmissionState | None, **config: Any) -> Any:
    review = load(name_or_review) if isinstance(name_or_review, str) else name_or_review
    return decide(review, st, AdmissionConfig(**config), RULES, NOW)


def allowed(uid: str, *warnings: str) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": API, "kind": "AdmissionReview", "response": response}


def denied(uid: str, message: str, *warnings: str) -> dict[str, Any]:
    out = allowed(uid, *warnings)
    out["response"]["allowed"] = False
    out["response"]["status"] = {"code": 403, "message": message}
    return out


UID = {name: json.loads((DATA / f"{name}.json").read_text())["request"]["uid"]
       for name in ("no-gpu", "gpu-vision", "gpu-ml-1", "gpu-ml-2", "gpu-ml-1-second",
                    "exempt-gpu-operator", "dry-run", "override-admin", "override-user", "mig",
                    "init-containers")}  # fmt: skip


# -- allowed ----------------------------------------------------------------------------


def test_pods_allowed_without_counting_or_with_it() -> None:
    active = state(gate())
    # no GPU asked: allowed, whatever the budget; nothing counted
    d = answer("no-gpu", active)
    assert (d.review, d.counts) == (allowed(UID["no-gpu"]), {})
    # a GPU pod of team vision: outside the ml-team scope
    d = answer("gpu-vision", active)
    assert (d.review, d.counts) == (allowed(UID["gpu-vision"]), {})
    # in scope, but the budget not active (not over its limit for the grace period yet):
    # allowed, and its GPU counted against ml-team
    d = answer("gpu-ml-1", state(gate(active=False)))
    assert (d.review, d.counts) == (allowed(UID["gpu-ml-1"]), {"ml-team": 1})


def test_only_pod_creates_are_judged() -> None:
    update = load("gpu-ml-1")
    update["request"]["operation"] = "UPDATE"
    assert answer(update, state(gate())).review == allowed(UID["gpu-ml-1"])
    other = load("gpu-ml-1")
    other["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert answer(other, state(gate())).review == allowed(UID["gpu-ml-1"])


# -- denied, warned, exempt ---------------------------------------------------------------


def test_block_denies_with_the_budget_in_words() -> None:
    d = answer("gpu-ml-1", state(gate()))
    assert d.review == denied(UID["gpu-ml-1"], BLOCKED)
    assert d.counts == {}


def test_throttle_without_a_cap_blocks() -> None:
    d = answer("gpu-ml-1", state(gate(action="throttle", max_gpus=None)))
    assert d.review == denied(UID["gpu-ml-1"], BLOCKED)


def test_scope_by_namespace_and_by_the_namespace_team_map() -> None:
    unlabelled = load("gpu-ml-1")
    del unlabelled["request"]["object"]["metadata"]["labels"]
    # no team label: team is __unallocated__, outside a team-ml scope ...
    assert answer(unlabelled, state(gate())).review["response"]["allowed"] is True
    # ... unless the namespace-to-team map names ml-team's team
    rules = AttributionRules(namespace_teams={"ml-team": "ml"})
    d = decide(unlabelled, state(gate()), AdmissionConfig(), rules, NOW)
    assert d.review == denied(UID["gpu-ml-1"], BLOCKED)
    # a namespace scope holds it by the request's namespace
    by_ns = gate(wants={"namespace": frozenset({"ml-team"})})
    assert answer(unlabelled, state(by_ns)).review == denied(UID["gpu-ml-1"], BLOCKED)


def test_warn_mode_admits_with_a_short_warning() -> None:
    warning = BLOCKED + " (warn mode: admitted)"
    assert len(warning) == 115
    for d in (answer("gpu-ml-1", state(gate()), mode="warn"),
              answer("gpu-ml-1", state(gate(mode="warn")))):  # fmt: skip
        assert d.review == allowed(UID["gpu-ml-1"], warning)
        assert d.counts == {"ml-team": 1}
    # a long budget name: cut to 119 characters
    long = gate(budget="research-foundation-models-h100-reserved-capacity", mode="warn")
    (text,) = answer("gpu-ml-1", state(long)).review["response"]["warnings"]
    assert text == (
        "budget research-foundation-models-h100-reserved-capacity exceeded: spend "
        "10,250.00 USD of limit 10,000.00 USD; new G..."
    )
    assert len(text) == 119


def test_exempt_namespace() -> None:
    fleet = gate(budget="fleet", wants={})  # the whole fleet, active
    assert answer("exempt-gpu-operator", state(fleet)).review == allowed(UID["exempt-gpu-operator"])
    # the same pod where gpu-operator is not exempt: the fleet budget holds it
    d = answer("exempt-gpu-operator", state(fleet), exempt_namespaces=["kube-system"])
    assert d.review["response"]["allowed"] is False
    assert d.review["response"]["status"]["message"].startswith("budget fleet exceeded")


# -- throttle and the counts --------------------------------------------------------------


THROTTLE = gate(action="throttle", max_gpus=4, running_gpus=3)


def capped(in_use: int, requested: int) -> str:
    return (
        "budget ml-team exceeded: spend 10,250.00 USD of limit 10,000.00 USD; "
        f"GPUs capped at 4: {in_use} in use, {requested} requested"
    )


def test_throttle_counts_what_it_admits() -> None:
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: NOW / 1000)
    keeper.refresh(state(THROTTLE))
    # 3 running + 2 asked = 5 > 4
    assert keeper.review(load("gpu-ml-2")) == denied(UID["gpu-ml-2"], capped(3, 2))
    assert keeper.admitted() == {}
    # 3 + 1 = 4: within the cap, and counted
    assert keeper.review(load("gpu-ml-1")) == allowed(UID["gpu-ml-1"])
    assert keeper.admitted() == {"ml-team": 1}
    # 3 running + 1 admitted since + 1 = 5 > 4
    second = load("gpu-ml-1-second")
    assert keeper.review(second) == denied(UID["gpu-ml-1-second"], capped(4, 1))
    # a refresh (whose running count now holds the first pod, say, but not yet the
    # second) starts the counts again
    keeper.refresh(state(gate(action="throttle", max_gpus=4, running_gpus=3)))
    assert keeper.admitted() == {}
    assert keeper.review(second) == allowed(UID["gpu-ml-1-second"])


def test_a_refresh_keeps_what_its_running_counts_have_not_seen() -> None:
    clock = [NOW / 1000]
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: clock[0])
    keeper.refresh(state(gate(action="throttle", max_gpus=4, running_gpus=1)))
    assert keeper.review(load("gpu-ml-1"))["response"]["allowed"]  # at NOW: 1 + 1 <= 4
    clock[0] += 30
    assert keeper.review(load("gpu-ml-2"))["response"]["allowed"]  # at NOW + 30 s: 2 + 2
    assert keeper.admitted() == {"ml-team": 3}
    # a refresh whose inventory (to NOW + 10 s) holds the first pod (running 2), not the
    # second: the second's 2 GPUs stay counted, and 2 + 2 + 1 > 4
    fresh = gate(action="throttle", max_gpus=4, running_gpus=2)
    keeper.refresh(AdmissionState((fresh,), NOW + 40_000, counted_to_ms=NOW + 10_000))
    assert keeper.admitted() == {"ml-team": 2}
    assert keeper.review(load("gpu-ml-1-second")) == denied(UID["gpu-ml-1-second"], capped(4, 1))


def test_concurrent_reviews_take_the_cap_once() -> None:
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: NOW / 1000)
    keeper.refresh(state(gate(action="throttle", max_gpus=4, running_gpus=0)))
    base = load("gpu-ml-1")
    answers: list[bool] = []

    def one(i: int) -> None:
        review = copy.deepcopy(base)
        review["request"]["uid"] = f"uid-{i}"
        answers.append(keeper.review(review)["response"]["allowed"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 12 + [True] * 4
    assert keeper.admitted() == {"ml-team": 4}


def test_dry_run_answers_without_counting() -> None:
    assert answer("dry-run", state(THROTTLE)).counts == {}
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: NOW / 1000)
    keeper.refresh(state(THROTTLE))
    assert keeper.review(load("dry-run")) == allowed(UID["dry-run"])
    assert keeper.admitted() == {}
    # the next real pod still sees 3 in use: 3 + 1 = 4, allowed
    assert keeper.review(load("gpu-ml-1")) == allowed(UID["gpu-ml-1"])
    assert keeper.review(load("gpu-ml-1-second")) == denied(UID["gpu-ml-1-second"], capped(4, 1))
    # a dry run is answered as the real request would be
    assert keeper.review(load("dry-run")) == denied(UID["dry-run"], capped(4, 1))


# -- failure: no state, stale state, unreadable requests ------------------------------------


def test_fail_open_and_closed() -> None:
    uid = UID["gpu-ml-1"]
    none_yet = "aifinops holds no budget state yet"
    stale = "its budget state is 601 s old (limit 600 s)"
    for st, why in ((None, none_yet), (state(gate(), age_s=601), stale)):
        assert answer("gpu-ml-1", st).review == allowed(uid, f"GPU budgets not checked: {why}")
        assert answer("gpu-ml-1", st, failure="closed").review == denied(
            uid, f"GPU budgets cannot be checked, and admission fails closed: {why}"
        )
        assert answer("gpu-ml-1", st).counts == {}
    # warn mode never denies, not even failing closed
    assert answer("gpu-ml-1", None, failure="closed", mode="warn").review == allowed(
        uid,
        "GPU budgets cannot be checked, and admission fails closed: aifinops holds no "
        "budget state yet (warn mode: admitted)",
    )
    # 599 s old is fresh: the budget decides
    assert answer("gpu-ml-1", state(gate(), age_s=599)).review == denied(uid, BLOCKED)
    # a pod asking for no GPU needs no state
    assert answer("no-gpu", None, failure="closed").review == allowed(UID["no-gpu"])


def test_an_unreadable_gpu_quantity_follows_the_failure_policy() -> None:
    bad = load("gpu-ml-1")
    bad["request"]["object"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = (
        "two"
    )
    why = (
        "cannot read the pod's GPU request: spec.containers[0] (trainer).resources."
        "limits[nvidia.com/gpu]: 'two' is not a Kubernetes quantity"
    )
    assert answer(bad, state(gate()), failure="closed").review == denied(
        UID["gpu-ml-1"], f"GPU budgets cannot be checked, and admission fails closed: {why}"
    )
    (warning,) = answer(bad, state(gate())).review["response"]["warnings"]
    assert warning == (
        "GPU budgets not checked: cannot read the pod's GPU request: spec.containers[0] "
        "(trainer).resources.limits[nvidia.com..."
    )


def test_malformed_reviews_are_usage_errors() -> None:
    review = load("gpu-ml-1")
    no_uid = copy.deepcopy(review)
    del no_uid["request"]["uid"]
    beta = {**review, "apiVersion": "admission.k8s.io/v1beta1"}
    no_pod = copy.deepcopy(review)
    del no_pod["request"]["object"]
    bad_labels = copy.deepcopy(review)
    bad_labels["request"]["object"]["metadata"]["labels"] = ["team=ml"]
    bare = {"apiVersion": API, "kind": "AdmissionReview"}
    bodies: tuple[Any, ...] = ({}, [], bare, no_uid, beta, no_pod, bad_labels)
    for body in bodies:
        with pytest.raises(UsageError) as caught:
            decide(body, state(gate()), AdmissionConfig(), RULES, NOW)
        assert caught.value.where == "body"


# -- override -----------------------------------------------------------------------------


def test_override_by_an_admin_group_and_by_a_user() -> None:
    d = answer("override-admin", state(gate()))
    assert d.review == allowed(
        UID["override-admin"],
        "budget override by kubernetes-admin: admitted over budget ml-team",
    )
    assert d.counts == {"ml-team": 1}
    # alice (groups ml-engineers, system:authenticated) may not: the annotation is ignored
    ignored = "ai-finops.io/budget-override ignored: alice@example.com may not override GPU budgets"
    assert answer("override-user", state(gate())).review == denied(
        UID["override-user"], BLOCKED, ignored
    )
    # named among the override users, she may
    d = answer("override-user", state(gate()), override_users=["alice@example.com"])
    assert d.review["response"]["allowed"] is True
    assert d.review["response"]["warnings"][0].startswith("budget override by alice@example.com")
    # an admin's override also lifts a closed failure
    d = answer("override-admin", None, failure="closed")
    assert d.review == allowed(
        UID["override-admin"], "budget override by kubernetes-admin: admitted unchecked"
    )
    # with nothing to override, the warning says so
    d = answer("override-admin", state(gate(active=False)))
    assert d.review == allowed(
        UID["override-admin"], "budget override by kubernetes-admin: nothing to override"
    )


# -- GPUs asked ---------------------------------------------------------------------------


def test_mig_devices_count() -> None:
    mig = load("mig")
    assert pod_gpus(mig["request"]["object"]) == 2  # nvidia.com/mig-1g.10gb: "2"
    # model llama-3-8b, team ml: in scope; 3 running + 2 > 4
    assert answer(mig, state(THROTTLE)).review == denied(UID["mig"], capped(3, 2))


def test_init_containers() -> None:
    pod = load("init-containers")["request"]["object"]
    # containers trainer 2 + tensorboard 1 = 3; init containers nccl-check 4, fetch-data 0
    assert pod_gpus(pod) == 4
    # a sidecar (restartPolicy: Always) runs beside what follows it: containers 1 + sidecar
    # 1 = 2; the init container after the sidecar needs 2 + 1 = 3
    sidecar = {"spec": {
        "initContainers": [
            {"name": "proxy", "restartPolicy": "Always",
             "resources": {"limits": {"nvidia.com/gpu": "1"}}},
            {"name": "warmup", "resources": {"requests": {"nvidia.com/gpu": "2"}}},
        ],
        "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    }}  # fmt: skip
    assert pod_gpus(sidecar) == 3
    shared = {"spec": {"containers": [
        {"name": "a", "resources": {"limits": {"nvidia.com/gpu.shared": "1", "cpu": "2"}}},
        {"name": "b", "resources": {"requests": {"nvidia.com/gpu": "1"}}},
    ]}}  # fmt: skip
    assert pod_gpus(shared) == 2


@pytest.mark.parametrize(
    ("value", "count"),
    [("2", 2), ("2.0", 2), ("1000m", 1), ("1k", 1000), ("2e0", 2), ("+3", 3), (3, 3),
     ("1Ki", 1024), ("0", 0)],
)  # fmt: skip
def test_device_quantities(value: Any, count: int) -> None:
    assert device_count(value, "x") == count


@pytest.mark.parametrize("value", ["0.5", "500m", "-1", "two", "1e19", "", True, None, "1 "])
def test_device_quantities_refused(value: Any) -> None:
    if value == "1 ":  # surrounding blanks are not refused: the API server trims them
        assert device_count(value, "x") == 1
        return
    with pytest.raises(InputError):
        device_count(value, "x")


# -- the route, over HTTPS ----------------------------------------------------------------


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, Gatekeeper]]:
    """The admission route alone in a FastAPI app, served by uvicorn over TLS with a
    self-signed certificate made by the openssl CLI."""
    need_binary("openssl")  # locally a skip, in CI (CI=true) a failure
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: NOW / 1000)
    keeper.refresh(state(THROTTLE))
    app = FastAPI()
    app.include_router(admission_router(keeper))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning",
        ssl_certfile=str(cert), ssl_keyfile=str(key),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield (
            f"https://127.0.0.1:{port}/api/v1/admission",
            ssl.create_default_context(cafile=str(cert)),
            keeper,
        )
    finally:
        server.should_exit = True
        thread.join(30)


def test_the_route_over_https(https: tuple[str, ssl.SSLContext, Gatekeeper]) -> None:
    url, tls, keeper = https
    with httpx.Client(verify=tls, timeout=10) as client:
        got = client.post(url, json=load("gpu-ml-1"))
        assert got.status_code == 200
        assert got.json() == allowed(UID["gpu-ml-1"])
        assert keeper.admitted() == {"ml-team": 1}
        got = client.post(url, json=load("gpu-ml-2"))
        assert got.json() == denied(UID["gpu-ml-2"], capped(4, 2))
        # not JSON, and JSON that is not an AdmissionReview: 400 in the error envelope
        for body in (b"{not json", b'{"apiVersion": "v1", "kind": "Pod"}'):
            bad = client.post(url, content=body, headers={"Content-Type": "application/json"})
            assert bad.status_code == 400
            error = bad.json()["error"]
            assert (error["type"], error["where"]) == ("UsageError", "body")
            assert set(error) == {"type", "message", "where", "hint"}


# -- the deploy manifests -----------------------------------------------------------------


def manifests(name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d}


def test_webhook_manifest() -> None:
    config = manifests("validating-webhook.yaml")["ValidatingWebhookConfiguration"]
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    (hook,) = config["webhooks"]
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods"], "scope": "Namespaced"}]  # fmt: skip
    assert hook["failurePolicy"] == "Ignore"
    assert "Fail would refuse" in (DEPLOY / "validating-webhook.yaml").read_text()
    assert (hook["timeoutSeconds"], hook["sideEffects"]) == (5, "None")
    assert hook["admissionReviewVersions"] == ["v1"]
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert (expr["key"], expr["operator"]) == ("kubernetes.io/metadata.name", "NotIn")
    assert "kube-system" in expr["values"]
    service = hook["clientConfig"]["service"]
    assert service["path"] == "/api/v1/admission"
    assert hook["clientConfig"]["caBundle"] == "${CA_BUNDLE}"
    # the Service and Deployment it points at
    objects = manifests("aifinops.yaml")
    svc, deployment = objects["Service"], objects["Deployment"]
    assert (svc["metadata"]["name"], svc["metadata"]["namespace"]) == (
        service["name"], service["namespace"],
    )  # fmt: skip
    assert svc["spec"]["ports"][0]["port"] == service["port"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "serve"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]
    assert secret == "aifinops-webhook-tls"
    assert f"--tls-cert={mounts['tls']}/tls.crt" in args
    assert f"--tls-key={mounts['tls']}/tls.key" in args
    assert deployment["spec"]["selector"]["matchLabels"].items() <= svc["spec"]["selector"].items()


def _walk(doc: Any, schema: dict[str, Any], path: str) -> list[str]:
    """The keys of `doc` that `schema` does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(doc, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            return [] if isinstance(extra, dict) else [path]
        out: list[str] = []
        for k, v in doc.items():
            out += _walk(v, props[k], f"{path}.{k}") if k in props else [f"{path}.{k}"]
        return out
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _walk(v, schema["items"], f"{path}[{i}]")]
    return []


def test_costbudget_crd_holds_the_budget_shape() -> None:
    crd = manifests("costbudget-crd.yaml")["CustomResourceDefinition"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (
        "gpu-autoscaler.io",
        "CostBudget",
    )
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    spec = schema["spec"]["properties"]
    assert set(spec) >= {"monthlyLimit", "limit", "period", "resetDay", "timezone", "currency",
                         "scope", "alerts", "enforcement", "enabled"}  # fmt: skip
    scope = {"teams", "namespaces", "models", "projects", "costCenters", "experimentID", "labels"}
    assert set(spec["scope"]["properties"]) == scope
    alert = spec["alerts"]["items"]["properties"]
    assert set(alert) == {"name", "thresholdPercent", "severity", "basis", "channels"}
    assert set(alert["channels"]["items"]["properties"]) == {"type", "name", "config"}
    enforcement = spec["enforcement"]["properties"]
    assert set(enforcement) == {"action", "gracePeriodMinutes", "mode", "throttleConfig"}
    assert set(enforcement["throttleConfig"]["properties"]) == {"maxGPUs", "maxSpotInstances"}
    assert set(schema["status"]["properties"]) == {
        "currentSpend", "percentageUsed", "budgetStatus", "projectedPeriodSpend",
        "daysRemaining", "alertsFired", "enforcementActive",
    }  # fmt: skip
    # every field of a budget with every field set, as aifinops writes it, is declared
    full = parse_budget({
        "apiVersion": "gpu-autoscaler.io/v1alpha1", "kind": "CostBudget",
        "metadata": {"name": "everything"},
        "spec": {
            "limit": 2500, "period": "week", "resetDay": 1, "timezone": "Europe/Berlin",
            "currency": "EUR", "description": "all fields", "enabled": True,
            "scope": {"teams": ["ml"], "namespaces": ["ml-team"], "models": ["llama"],
                      "projects": ["p"], "costCenters": ["cc"], "experimentID": "e1",
                      "labels": {"team": "ml"}},
            "alerts": [{"name": "half", "thresholdPercent": 50, "severity": "info",
                        "basis": "forecast",
                        "channels": [{"type": "slack", "config": {"webhook_url": "x"}},
                                     {"name": "ops"}]}],
            "enforcement": {"action": "throttle", "gracePeriodMinutes": 60, "mode": "warn",
                            "throttleConfig": {"maxGPUs": 8, "maxSpotInstances": 5}},
        },
    })  # fmt: skip
    doc = full.to_document()
    assert _walk(doc["spec"], schema["spec"], "spec") == []
    assert _walk({**doc["spec"], "limits": 1}, schema["spec"], "spec") == ["spec.limits"]


def test_a_retried_review_is_counted_once() -> None:
    """The API server retries a review that timed out with the same uid: it gets the same
    answer and its GPUs are counted once."""
    keeper = Gatekeeper(AdmissionConfig(), RULES, clock=lambda: NOW / 1000)
    keeper.refresh(state(THROTTLE))
    first = keeper.review(load("gpu-ml-1"))
    assert first == allowed(UID["gpu-ml-1"]) and keeper.admitted() == {"ml-team": 1}
    assert keeper.review(load("gpu-ml-1")) == first  # 3 + 1 (itself) + 1 would be over 4
    assert keeper.admitted() == {"ml-team": 1}
