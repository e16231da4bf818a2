"""Prometheus (and Thanos, Mimir, VictoriaMetrics: anything with its HTTP API) as a source.

`query_range` over a long window is cut into chunks aligned to the step, each retried with
backoff on connection errors, timeouts, 429 and 5xx. A chunk that still fails is a gap,
reported with its time range; the chunks around it still count. A gap is missing data,
never zero usage: no sample is made for it.

What is read: dcgm-exporter series (usage, energy) with their pod labels, and
kube-state-metrics series for pods (labels, node, requests, lifetime) and nodes (labels,
capacity). Label values put into PromQL are escaped, so a team name cannot change a query.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aifinops.core.shares import gpus_from_capacity as gpus_from_capacity  # re-exported
from aifinops.errors import InputError
from aifinops.sources.labels import map_labels

MAX_POINTS = 10_000  # per series per request; Prometheus refuses more than 11,000


def escape(value: str) -> str:
    """A label value as a PromQL double-quoted string literal (without the quotes)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(metric: str, matchers: Mapping[str, str] | None = None) -> str:
    """`metric{k="v",...}` with exact-match matchers, values escaped."""
    if not matchers:
        return metric
    body = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(matchers.items()))
    return f"{metric}{{{body}}}"


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[int, float]]  # (ts_ms, value), ascending


@dataclass
class Gap:
    start_ms: int
    end_ms: int
    what: str

    def __str__(self) -> str:
        from aifinops.core.windows import from_ms

        start, end = from_ms(self.start_ms).isoformat(), from_ms(self.end_ms).isoformat()
        return f"{start} .. {end}: {self.what}"


@dataclass
class RangeResult:
    series: list[Series] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    requests: int = 0


class PromClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_points: int = MAX_POINTS,
        sleep: Callable[[float], None] = time.sleep,
        headers: Mapping[str, str] | None = None,
    ):
        self.base = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_points = max_points
        self.sleep = sleep
        self.headers = dict(headers or {})
        self.requests = 0

    # -- HTTP ---------------------------------------------------------------------------
    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests += 1
            request = urllib.request.Request(
                url, headers={"User-Agent": "aifinops", **self.headers}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = json.loads(response.read())
            except urllib.error.HTTPError as error:
                detail = _error_text(error)
                last = f"HTTP {error.code}{': ' + detail if detail else ''}"
                if error.code in (429,) or error.code >= 500:
                    continue
                raise _QueryError(last) from error
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                last = f"cannot reach it: {getattr(error, 'reason', error)}"
                continue
            except ValueError as error:
                raise _QueryError(f"the answer is not JSON: {error}") from error
            if body.get("status") != "success":
                raise _QueryError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
            return body.get("data")
        raise _QueryError(f"failed after {self.retries + 1} attempts: {last}")

    def check(self) -> None:
        """Fail early, with the address, when the server cannot be asked at all."""
        try:
            self._get("/api/v1/query", {"query": "1"})
        except _QueryError as error:
            raise InputError(
                f"Prometheus API not usable: {error}",
                where=self.base,
                hint="give the base URL of the Prometheus HTTP API, e.g. http://prometheus:9090",
            ) from error

    # -- queries ------------------------------------------------------------------------
    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> RangeResult:
        """Points at start, start+step, ... < end (the window is half-open), in chunks of at
        most `max_points` steps aligned to the step. Failed chunks become gaps."""
        out = RangeResult()
        merged: dict[tuple[tuple[str, str], ...], Series] = {}
        first = start_ms + (-start_ms) % step_ms  # the first step boundary >= start
        chunk = step_ms * self.max_points
        a = first
        while a < end_ms:
            b = min(a + chunk, end_ms)
            last_point = b - 1 - (b - 1 - a) % step_ms  # the last step boundary < b
            params = {
                "query": query,
                "start": _seconds(a),
                "end": _seconds(last_point),
                "step": _seconds(step_ms),
            }
            try:
                data = self._get("/api/v1/query_range", params)
            except _QueryError as error:
                out.gaps.append(Gap(a, b, f"query {query!r} failed: {error}"))
                a = b
                continue
            if data.get("resultType") != "matrix":
                raise InputError(
                    f"expected a matrix for {query!r}, got {data.get('resultType')}",
                    where=self.base,
                )
            for item in data.get("result", []):
                labels = dict(item.get("metric", {}))
                key = tuple(sorted(labels.items()))
                series = merged.get(key)
                if series is None:
                    series = merged[key] = Series(labels, [])
                for ts, value in item.get("values", []):
                    series.points.append((round(float(ts) * 1000), _float(value)))
            a = b
        out.series = list(merged.values())
        out.requests = self.requests
        return out


class _QueryError(Exception):
    """A request that failed after its retries (becomes a gap or an InputError)."""


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
        return str(body.get("error", ""))[:200]
    except (ValueError, OSError):
        return ""


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def missing_steps(
    series: Iterable[Series], start_ms: int, end_ms: int, step_ms: int, what: str
) -> list[Gap]:
    """Ranges of steps at which none of the given series had a point: data missing."""
    first = start_ms + (-start_ms) % step_ms
    seen: set[int] = set()
    for s in series:
        seen.update(ts for ts, _ in s.points)
    gaps = []
    run: int | None = None
    t = first
    while t < end_ms:
        if t not in seen:
            if run is None:
                run = t
        elif run is not None:
            gaps.append(Gap(run, t, what))
            run = None
        t += step_ms
    if run is not None:
        gaps.append(Gap(run, end_ms, what))
    return gaps


# -- kube-state-metrics ------------------------------------------------------------------
KSM_NODE_KEYS = {
    "instance_type": (
        "label_node_kubernetes_io_instance_type",
        "label_beta_kubernetes_io_instance_type",
    ),
    "region": (
        "label_topology_kubernetes_io_region",
        "label_failure_domain_beta_kubernetes_io_region",
    ),
    "zone": ("label_topology_kubernetes_io_zone", "label_failure_domain_beta_kubernetes_io_zone"),
    "gpu_model": ("label_nvidia_com_gpu_product",),
    "mig_strategy": ("label_nvidia_com_mig_strategy",),
}
# the GPU resources kube-state-metrics names (dots and slashes made `_`), by their
# Kubernetes names: whole GPUs, and time-sliced ones advertised as `nvidia.com/gpu.shared`
KSM_GPU_RESOURCES = {
    "nvidia_com_gpu": "nvidia.com/gpu",
    "nvidia_com_gpu_shared": "nvidia.com/gpu.shared",
}
_CAPACITY = {
    "label_karpenter_sh_capacity_type": {"spot": "spot", "on-demand": "on-demand"},
    "label_eks_amazonaws_com_capacity_type": {"SPOT": "spot", "ON_DEMAND": "on-demand"},
    "label_cloud_google_com_gke_spot": {"true": "spot"},
    "label_cloud_google_com_gke_preemptible": {"true": "spot"},
    "label_kubernetes_azure_com_scalesetpriority": {"spot": "spot"},
}
_PROVIDER_HINTS = {
    "label_eks_amazonaws_com_nodegroup": "aws",
    "label_cloud_google_com_gke_nodepool": "gcp",
    "label_kubernetes_azure_com_agentpool": "azure",
}


def ksm_labels(series_labels: Mapping[str, str], wanted: Iterable[str]) -> dict[str, str]:
    """Pod or namespace labels from a `kube_*_labels` series (its `label_*` labels)."""
    return map_labels({k: v for k, v in series_labels.items() if k.startswith("label_")}, wanted)


def node_facts(labels: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"node_id": labels.get("node")}
    for field_name, keys in KSM_NODE_KEYS.items():
        for k in keys:
            if labels.get(k):
                row[field_name] = labels[k]
                break
    for k, mapping in _CAPACITY.items():
        if labels.get(k) in mapping:
            row["capacity_type"] = mapping[labels[k]]
    for k, provider in _PROVIDER_HINTS.items():
        if labels.get(k):
            row["provider"] = provider
    if labels.get("label_nvidia_com_gpu_count", "").isdigit():
        row["gpu_count"] = int(labels["label_nvidia_com_gpu_count"])
    # GPU Feature Discovery's `nvidia.com/gpu.replicas`: how many pods share each GPU
    if labels.get("label_nvidia_com_gpu_replicas", "").isdigit():
        row["gpu_replicas"] = int(labels["label_nvidia_com_gpu_replicas"])
    return row
