"""Budget enforcement at pod admission (DESIGN §3): the answer to one Kubernetes
`AdmissionReview` of a Pod CREATE, given the enforcing budgets as last seen.

Pure: the review, the budget state and the time come in; the answer and the GPUs to count
against each budget go out. `decide` works in six steps:
1. the review's shape is checked (a `UsageError` for anything that is not an
   `admission.k8s.io/v1` `AdmissionReview` with a `request.uid`);
2. anything but a Pod CREATE, a pod in an exempt namespace, or a pod asking for no GPU is
   allowed;
3. no budget state, or state older than `max_state_age_s`, is a failure: allowed with a
   warning (`failure: open`) or denied saying why (`failure: closed`);
4. each gate whose scope holds the pod (its attributed dimensions and its namespace) and
   that is active denies it: `block` always, `throttle` when the GPUs in use (running at
   the refresh, plus admitted since) and the pod's would pass `max_gpus`; a gate in
   `warn` mode turns its denial into a warning, and `mode: warn` turns every denial (a
   closed failure's too) into one;
5. an override annotation set to "true" by a user or group named in the config lifts the
   denials (a warning names the user); set by anyone else it is ignored, with a warning;
6. an allowed, non-dry-run answer carries the pod's GPUs for every gate whose scope holds
   it, to be added to that gate's admitted count.

A GPU quantity that cannot be read as a whole number of devices (which the API server,
validating extended resources before it calls webhooks, never sends) makes step 3's
failure answer, naming the container and the quantity: a parser of ours failing should
not decide more than the configured failure policy would. So does any other exception
while deciding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, Field

from aifinops.core.attribution import AttributionRules, resolve_dimensions
from aifinops.core.budgets import Scope, money_words
from aifinops.errors import InputError, UsageError

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
GPU = "nvidia.com/gpu"
GPU_SHARED = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"
WARNING_MAX = 119  # Kubernetes asks for warnings under 120 characters
DENIED = 403
_NOTHING: Mapping[str, int] = MappingProxyType({})
_FLEET = Scope()  # Scope.matches is the one statement of "a scope holds these dimensions"


class AdmissionConfig(BaseModel, extra="forbid"):
    """The webhook's settings (`admission:` in the config file)."""

    mode: Literal["enforce", "warn"] = "enforce"
    failure: Literal["open", "closed"] = "open"
    max_state_age_s: float = Field(default=600, gt=0)
    exempt_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease", "gpu-operator"]
    )
    override_annotation: str = "ai-finops.io/budget-override"
    override_groups: list[str] = Field(default_factory=lambda: ["system:masters"])
    override_users: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Gate:
    """One enforcing budget as the scheduler last saw it."""

    budget: str
    wants: Mapping[str, frozenset[str]]  # dimension -> values it may take; empty: the fleet
    action: Literal["throttle", "block"]
    mode: Literal["enforce", "warn"]
    active: bool  # the limit exceeded for at least the grace period
    spend: Decimal
    limit: Decimal
    currency: str
    max_gpus: int | None  # the throttle's cap; None under throttle admits none, as block
    running_gpus: int  # GPUs held by running pods in scope at the refresh


@dataclass(frozen=True)
class AdmissionState:
    gates: tuple[Gate, ...]
    refreshed_ms: int
    # the time up to which the gates' running counts hold the pods admitted (the newest
    # inventory behind them): what was admitted later is still counted after a refresh;
    # None: the running counts are taken to hold everything admitted before
    counted_to_ms: int | None = None


@dataclass(frozen=True)
class Decision:
    review: dict[str, Any]  # the AdmissionReview to answer with
    counts: dict[str, int]  # budget -> GPUs to add to its admitted count (empty: none)
    reason: str  # in words, for the log


@dataclass
class _Verdict:
    denials: list[str] = field(default_factory=list)
    over: list[str] = field(default_factory=list)  # the budgets behind the denials
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reason: str = "within budget"


# -- GPUs a pod asks for -----------------------------------------------------------------

# Kubernetes' quantity grammar: a signed decimal, then a binary suffix, a decimal exponent
# or a decimal SI suffix (the exponent is tried before `E`, exa)
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<si>[numkMGTPE]?))$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def device_count(value: Any, where: str) -> int:
    """A quantity of an extended resource (devices) as a whole number: "2", "2.0", "1k".
    Anything else (a fraction, a negative, not a quantity) is an `InputError`."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        match = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise InputError(f"{value!r} is not a Kubernetes quantity", where=where)
        try:
            number = Decimal(match["num"])
            if match["bin"]:
                number *= _BINARY[match["bin"]]
            else:
                number = number.scaleb(int(match["exp"][1:]) if match["exp"] else _SI[match["si"]])
        except (ArithmeticError, ValueError):
            raise InputError(f"{value!r} is out of range", where=where) from None
    if number < 0 or number != number.to_integral_value() or number.adjusted() > 18:
        raise InputError(f"{value!r} is not a whole number of devices", where=where)
    return int(number)


def _is_gpu(resource: str) -> bool:
    return resource in (GPU, GPU_SHARED) or resource.startswith(MIG_PREFIX)


def container_gpus(container: Mapping[str, Any], where: str) -> int:
    """GPUs (whole, time-sliced or MIG devices) one container asks for: its limit of each
    GPU resource, else its request (the API server makes them equal when both are set)."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    total = 0
    for name in sorted({*limits, *requests}):
        if _is_gpu(name):
            kind = "limits" if name in limits else "requests"
            value = limits[name] if name in limits else requests[name]
            total += device_count(value, f"{where}.resources.{kind}[{name}]")
    return total


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a Pod asks for, as the scheduler counts a pod's requests: the containers'
    sum plus the sidecars' (init containers with `restartPolicy: Always`), or the largest
    need of one init container (with the sidecars started before it) if that is more."""
    spec = pod.get("spec") or {}

    def where(kind: str, i: int, c: Mapping[str, Any]) -> str:
        return f"spec.{kind}[{i}] ({c.get('name', '?')})"

    containers = sum(
        container_gpus(c, where("containers", i, c))
        for i, c in enumerate(spec.get("containers") or [])
    )
    sidecars = init_peak = 0
    for i, c in enumerate(spec.get("initContainers") or []):
        n = container_gpus(c, where("initContainers", i, c))
        if c.get("restartPolicy") == "Always":
            sidecars += n
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, sidecars + n)
    return max(containers + sidecars, init_peak)


# -- the decision ------------------------------------------------------------------------


def decide(
    review: Any,
    state: AdmissionState | None,
    config: AdmissionConfig,
    rules: AttributionRules,
    now_ms: int,
    admitted: Mapping[str, int] = _NOTHING,
) -> Decision:
    """The answer to one AdmissionReview (see the module's steps). `admitted`: GPUs
    admitted per budget since `state` was refreshed."""
    request = _request(review)  # 1.
    uid = request["uid"]
    kind = _mapping(request.get("kind"), "request.kind")
    if (kind.get("group"), kind.get("kind"), request.get("operation")) != ("", "Pod", "CREATE"):
        return _answer(uid, _Verdict(reason="not a Pod CREATE"))  # 2.
    pod = _mapping(request.get("object"), "request.object")
    if not pod:
        raise UsageError("a Pod CREATE review without the pod (request.object)", where="body")
    meta = _mapping(pod.get("metadata"), "request.object.metadata")
    labels = _mapping(meta.get("labels"), "request.object.metadata.labels")
    namespace = str(request.get("namespace") or meta.get("namespace") or "default")
    if namespace in config.exempt_namespaces:
        return _answer(uid, _Verdict(reason=f"namespace {namespace} is exempt"))
    try:
        gpus = pod_gpus(pod)
        if gpus == 0:
            return _answer(uid, _Verdict(reason="asks for no GPU"))
        verdict = _judge(labels, namespace, gpus, state, config, rules, now_ms, admitted)
    except InputError as exc:
        verdict = _failure(config, f"cannot read the pod's GPU request: {exc.where}: {exc.message}")
    except Exception as exc:  # a bug of ours decides no more than the failure policy
        verdict = _failure(config, f"the decision failed ({type(exc).__name__}: {exc})")
    if config.mode == "warn" and verdict.denials:  # never deny, failures included
        verdict.warnings += [_warned(m) for m in verdict.denials]
        verdict.denials, verdict.over = [], []
        verdict.reason = f"warn mode: {verdict.reason}"
    _override(verdict, request, meta, config)  # 5.
    if request.get("dryRun") is True or verdict.denials:
        verdict.counts = {}  # 6. a dry run, or a denied pod, runs nothing
    return _answer(uid, verdict)


def _request(review: Any) -> dict[str, Any]:
    hint = "send an admission.k8s.io/v1 AdmissionReview (admissionReviewVersions: [v1])"
    if not isinstance(review, Mapping):
        raise UsageError("the body is not a JSON object", where="body", hint=hint)
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        got = f"{review.get('apiVersion')!r} {review.get('kind')!r}"
        raise UsageError(f"not an {API_VERSION} {KIND} (got {got})", where="body", hint=hint)
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise UsageError("an AdmissionReview without a request", where="body", hint=hint)
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise UsageError("an AdmissionReview request without a uid", where="body", hint=hint)
    return dict(request)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{where} is not an object", where="body")
    return value


def _judge(
    labels: Mapping[str, Any],
    namespace: str,
    gpus: int,
    state: AdmissionState | None,
    config: AdmissionConfig,
    rules: AttributionRules,
    now_ms: int,
    admitted: Mapping[str, int],
) -> _Verdict:
    if state is None:  # 3.
        return _failure(config, "aifinops holds no budget state yet")
    age_s = (now_ms - state.refreshed_ms) / 1000
    if age_s > config.max_state_age_s:
        return _failure(
            config, f"its budget state is {age_s:.0f} s old (limit {config.max_state_age_s:g} s)"
        )
    strings = {str(k): str(v) for k, v in labels.items()}
    dims: dict[str, str | None] = dict(resolve_dimensions(rules, namespace, strings))
    dims["namespace"] = namespace
    verdict = _Verdict()
    for gate in state.gates:  # 4.
        if not _FLEET.matches(dims, {d: set(v) for d, v in gate.wants.items()}):
            continue
        verdict.counts[gate.budget] = verdict.counts.get(gate.budget, 0) + gpus
        message = _denial(gate, gpus, admitted.get(gate.budget, 0)) if gate.active else None
        if message is None:
            continue
        if gate.mode == "warn":
            verdict.warnings.append(_warned(message))
        else:
            verdict.denials.append(message)
            verdict.over.append(gate.budget)
    if verdict.denials:
        verdict.reason = "; ".join(verdict.denials)
    elif verdict.warnings:
        verdict.reason = "warn mode: " + "; ".join(verdict.warnings)
    return verdict


def _denial(gate: Gate, gpus: int, admitted: int) -> str | None:
    head = (
        f"budget {gate.budget} exceeded: spend {money_words(gate.spend, gate.currency)} "
        f"of limit {money_words(gate.limit, gate.currency)}"
    )
    if gate.action == "block" or gate.max_gpus is None:
        return f"{head}; new GPU pods are blocked"
    in_use = gate.running_gpus + admitted
    if in_use + gpus <= gate.max_gpus:
        return None
    return f"{head}; GPUs capped at {gate.max_gpus}: {in_use} in use, {gpus} requested"


def _failure(config: AdmissionConfig, why: str) -> _Verdict:
    if config.failure == "open":
        return _Verdict(
            warnings=[_short(f"GPU budgets not checked: {why}")], reason=f"failed open: {why}"
        )
    return _Verdict(
        denials=[f"GPU budgets cannot be checked, and admission fails closed: {why}"],
        reason=f"failed closed: {why}",
    )


def _override(
    verdict: _Verdict, request: Mapping[str, Any], meta: Mapping[str, Any], config: AdmissionConfig
) -> None:
    annotations = _mapping(meta.get("annotations"), "request.object.metadata.annotations")
    if str(annotations.get(config.override_annotation, "")).strip().lower() != "true":
        return
    info = _mapping(request.get("userInfo"), "request.userInfo")
    user = str(info.get("username") or "an unknown user")
    groups = info.get("groups")
    groups = {str(g) for g in groups} if isinstance(groups, list) else set()
    if user not in config.override_users and not groups & set(config.override_groups):
        ignored = f"{config.override_annotation} ignored: {user} may not override GPU budgets"
        verdict.warnings.append(_short(ignored))
        return
    if verdict.denials:
        what = f"over budget {', '.join(verdict.over)}" if verdict.over else "unchecked"
        verdict.warnings.append(_short(f"budget override by {user}: admitted {what}"))
        verdict.reason = f"override by {user}: {verdict.reason}"
        verdict.denials = []
    else:
        verdict.warnings.append(_short(f"budget override by {user}: nothing to override"))


def _warned(denial: str) -> str:
    return _short(f"{denial} (warn mode: admitted)")


def _short(text: str) -> str:
    return text if len(text) <= WARNING_MAX else text[: WARNING_MAX - 3] + "..."


def _answer(uid: str, verdict: _Verdict) -> Decision:
    response: dict[str, Any] = {"uid": uid, "allowed": not verdict.denials}
    if verdict.denials:
        response["status"] = {"code": DENIED, "message": "; ".join(verdict.denials)}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    review = {"apiVersion": API_VERSION, "kind": KIND, "response": response}
    return Decision(review, dict(verdict.counts), verdict.reason)
