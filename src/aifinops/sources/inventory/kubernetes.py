"""Kubernetes objects from `kubectl get nodes,pods,namespaces -o json` dumps.

Nodes give instance type, region, zone and capacity type (EKS, GKE, AKS and Karpenter
labels), GPU product and count (GPU feature discovery labels), MIG strategy and
time-slicing replicas. Pods give GPU, shared-GPU and MIG requests, CPU and memory requests,
the controller, labels, and start and end times.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifinops.core.shares import gpus_from_capacity
from aifinops.core.windows import iso_ms
from aifinops.errors import InputError

GPU = "nvidia.com/gpu"
GPU_SHARED = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"

_INSTANCE = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
_REGION = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
_ZONE = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
_SPOT = {
    "eks.amazonaws.com/capacityType": {"SPOT": "spot", "ON_DEMAND": "on-demand"},
    "karpenter.sh/capacity-type": {
        "spot": "spot",
        "on-demand": "on-demand",
        "reserved": "reserved",
    },
    "cloud.google.com/gke-spot": {"true": "spot"},
    "cloud.google.com/gke-preemptible": {"true": "spot"},
    "kubernetes.azure.com/scalesetpriority": {"spot": "spot", "regular": "on-demand"},
}


@dataclass
class KubeObjects:
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def read_dump(path: Path) -> KubeObjects:
    """`kubectl get ... -o json` (a List or one object), or YAML: `-o yaml`, or several
    `---`-separated objects (as Node YAML files come)."""
    from aifinops.sources.inputs import decode_text, read_input

    # UTF-8 with or without a BOM, or UTF-16 (`kubectl ... > file` in Windows PowerShell)
    text = decode_text(read_input(path), str(path), what="a kubectl JSON or YAML dump")
    return objects_from(_load(text, str(path)), str(path))


def _load(text: str, where: str) -> Any:
    hint = "produce it with: kubectl get nodes,pods,namespaces -A -o json"
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"not valid JSON ({exc.msg} at line {exc.lineno})", where=where, hint=hint
            ) from exc
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid JSON or YAML{at}", where=where, hint=hint) from exc
    if len(docs) == 1:
        return docs[0]
    return {"kind": "List", "items": docs}


def objects_from(doc: Any, path: str) -> KubeObjects:
    """Node, Pod and Namespace rows from a decoded List (or a single object)."""
    items = doc.get("items") if isinstance(doc, dict) and "items" in doc else [doc]
    if (
        not isinstance(items, list)
        or not all(isinstance(i, dict) for i in items)
        or (items and not any("kind" in i or "metadata" in i for i in items))
    ):
        raise InputError(
            "not a Kubernetes object list",
            where=path,
            hint="produce it with: kubectl get nodes,pods,namespaces -A -o json",
        )
    out = KubeObjects()
    kind_default = str(doc.get("kind", "")).removesuffix("List") if isinstance(doc, dict) else ""
    for i, item in enumerate(items):
        kind = item.get("kind") or kind_default
        where = f"{path}: items[{i}]"
        if kind == "Node":
            out.nodes.append(node_row(item, where))
        elif kind == "Pod":
            out.pods.append(pod_row(item, where))
        elif kind == "Namespace":
            meta = item.get("metadata") or {}
            out.namespaces.append(
                {"namespace": meta.get("name"), "labels": _str_map(meta.get("labels"))}
            )
        else:
            out.skipped[kind or "unknown"] = out.skipped.get(kind or "unknown", 0) + 1
    return out


def node_row(item: dict[str, Any], where: str) -> dict[str, Any]:
    meta = item.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise InputError("Node without metadata.name", where=where)
    labels = _str_map(meta.get("labels"))
    status = item.get("status") or {}
    capacity = status.get("capacity") or {}
    provider_id = (item.get("spec") or {}).get("providerID") or ""
    capacity_type = None
    for key, values in _SPOT.items():
        if key in labels:
            capacity_type = values.get(labels[key], capacity_type)
    replicas = labels.get("nvidia.com/gpu.replicas")
    gpu_replicas = int(replicas) if replicas and replicas.isdigit() else None
    mig_strategy = labels.get("nvidia.com/mig.strategy")
    return {
        "node_id": name,
        "provider": _provider(provider_id, labels),
        "region": _first(labels, _REGION),
        "zone": _first(labels, _ZONE),
        "instance_type": _first(labels, _INSTANCE),
        "capacity_type": capacity_type,
        "gpu_model": labels.get("nvidia.com/gpu.product")
        or labels.get("alibabacloud.com/gpu-card-model")
        or labels.get("aliyun.accelerator/nvidia_name")
        or labels.get("cloud.google.com/gke-accelerator")
        or labels.get("k8s.amazonaws.com/accelerator"),
        "gpu_count": _gpu_count(labels, capacity, mig_strategy, gpu_replicas),
        "cpu_cores": parse_cpu(capacity.get("cpu")),
        "memory_gib": parse_memory_gib(capacity.get("memory")),
        "mig_strategy": mig_strategy,
        "gpu_replicas": gpu_replicas,
        "resource_id": resource_id(provider_id),
        "labels": labels,
        "source": "kubernetes",
    }


def _gpu_count(
    labels: dict[str, str],
    capacity: dict[str, Any],
    mig_strategy: str | None,
    replicas: int | None,
) -> int:
    """Physical GPUs: GFD's `nvidia.com/gpu.count` label, else the advertised capacity
    (`nvidia.com/gpu` and `nvidia.com/gpu.shared` on a time-sliced node are GPUs x
    replicas; under a MIG strategy they count MIG devices, not GPUs: 0, unknown), else the
    Alibaba Cloud GPU counts."""
    count = labels.get("nvidia.com/gpu.count")
    if count:
        return int(float(count))
    advertised = [capacity[k] for k in (GPU, GPU_SHARED) if capacity.get(k) not in (None, "")]
    if advertised:
        total = sum(float(v) for v in advertised)
        node = {"mig_strategy": mig_strategy, "gpu_replicas": replicas}
        return gpus_from_capacity(node, total) or 0
    other = capacity.get("alibabacloud.com/gpu-count") or capacity.get("aliyun.com/gpu-count")
    return int(float(other)) if other else 0


def pod_row(item: dict[str, Any], where: str) -> dict[str, Any]:
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not name:
        raise InputError("Pod without metadata.name", where=where)
    cpu = mem = gpu = 0.0
    gpu_resource = None
    for container in spec.get("containers") or []:
        res = container.get("resources") or {}
        requests = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        cpu += parse_cpu(requests.get("cpu")) or 0.0
        mem += parse_memory_gib(requests.get("memory")) or 0.0
        for key, value in requests.items():
            if key in (GPU, GPU_SHARED) or key.startswith(MIG_PREFIX):
                gpu += float(value)
                gpu_resource = key
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    finished = [
        s.get("state", {}).get("terminated", {}).get("finishedAt")
        for s in status.get("containerStatuses") or []
    ]
    finished = [f for f in finished if f]
    end = max(finished) if finished and status.get("phase") in {"Succeeded", "Failed"} else None
    return {
        "workload_id": f"{namespace}/{name}",
        "kind": "pod",
        "namespace": namespace,
        "name": name,
        "node_id": spec.get("nodeName"),
        "controller": _controller(owner, meta.get("labels") or {}),
        "start_ms": iso_ms(status.get("startTime") or meta.get("creationTimestamp")),
        "end_ms": iso_ms(end),
        "gpu_request": gpu or None,
        "gpu_resource": gpu_resource,
        "cpu_request": cpu or None,
        "mem_request_gib": mem or None,
        "labels": _str_map(meta.get("labels")),
        "source": "kubernetes",
        "uid": meta.get("uid"),
    }


def _controller(owner: dict[str, Any] | None, labels: dict[str, Any]) -> str | None:
    """The pod's controller, followed up where the pod shows the next owner: a
    ReplicaSet `web-5d8f7` of a pod labelled `pod-template-hash: 5d8f7` belongs to the
    Deployment `web`. (A Job's CronJob is not guessed from its name.)"""
    if not owner:
        return None
    kind, name = str(owner.get("kind")), str(owner.get("name"))
    template_hash = str(labels.get("pod-template-hash") or "")
    if kind == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
        return f"Deployment/{name[: -len(template_hash) - 1]}"
    return f"{kind}/{name}"


_CPU = re.compile(r"^([0-9.]+)(m?)$")
_MEM = re.compile(r"^([0-9.]+(?:e[0-9]+)?)([KMGTPE]i?)?$")
_MEM_UNITS = {
    None: 1,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}


def parse_cpu(value: Any) -> float | None:
    if value is None or value == "":
        return None
    match = _CPU.match(str(value).strip())
    if not match:
        raise InputError(f"cannot read CPU quantity {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def parse_memory_gib(value: Any) -> float | None:
    if value is None or value == "":
        return None
    match = _MEM.match(str(value).strip())
    if not match:
        raise InputError(f"cannot read memory quantity {value!r}")
    return float(match.group(1)) * _MEM_UNITS[match.group(2)] / 1024**3


def resource_id(provider_id: str) -> str | None:
    """What the bill calls a node: the last part of its `providerID` (`i-0abc`, a VM name,
    a GCE instance) — for an Azure scale-set instance, the scale set and the instance
    (`aks-gpu-vmss/virtualMachines/3`), since the bill carries the scale set."""
    if not provider_id:
        return None
    parts = provider_id.rstrip("/").split("/")
    lower = [x.lower() for x in parts]
    if "virtualmachinescalesets" in lower:
        i = lower.index("virtualmachinescalesets")
        return "/".join(parts[i + 1 :]) or None
    return parts[-1] or None


def _provider(provider_id: str, labels: dict[str, str]) -> str | None:
    scheme = provider_id.split("://", 1)[0] if "://" in provider_id else ""
    known = {"aws": "aws", "gce": "gcp", "azure": "azure", "oci": "oci"}
    if scheme in known:
        return known[scheme]
    if any(k.startswith("eks.amazonaws.com/") for k in labels):
        return "aws"
    if any(k.startswith("cloud.google.com/") for k in labels):
        return "gcp"
    if any(k.startswith("kubernetes.azure.com/") for k in labels):
        return "azure"
    return None


def _first(labels: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}
