"""The allocation vocabulary: policies, buckets, and the cost report a query returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aifinops.core.money import ZERO, quantize
from aifinops.core.windows import Window, parse_instant

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
SHARED = "__shared__"
UNPRICED = "__unpriced__"
BUCKETS = (IDLE, UNALLOCATED, SHARED, UNPRICED)


# Why a time-sliced GPU's time was split evenly among its pods, not by request / replicas
REPLICAS_UNKNOWN = "replicas unknown"
MORE_PODS_THAN_REPLICAS = "pods ask for more than the replicas"
REQUEST_UNKNOWN = "a pod's GPU request unknown"


def even_split_note(nodes: dict[str, tuple[str, ...]]) -> str | None:
    """The report's note on shared GPUs split evenly among the pods present, not by
    `request / replicas` (DESIGN §2.4): each node with its reasons."""
    if not nodes:
        return None
    listed = "; ".join(f"{node} ({', '.join(why)})" for node, why in sorted(nodes.items()))
    return (
        "shared (time-sliced) GPUs split evenly among the pods on them, not by "
        f"request / replicas, on {len(nodes)} node(s): {listed}"
    )


def served_models_note(served: list[dict[str, object]]) -> str | None:
    """The report's note on models taken from serving counters (the workloads' labels name
    none): how many workloads, and each one serving several models with its split."""
    if not served:
        return None
    by_workload: dict[str, list[dict[str, object]]] = {}
    for r in served:
        by_workload.setdefault(str(r["workload"]), []).append(r)
    note = (
        f"model taken from the serving counters of {len(by_workload)} workload(s) whose "
        "labels name none"
    )
    several = {w: rs for w, rs in by_workload.items() if len(rs) > 1}
    if several:
        how = {"tokens": "by tokens", "requests": "by requests (no tokens counted)",
               "processing_seconds": "by job processing time (no tokens or requests)",
               "jobs": "by jobs (no tokens, requests or processing time)",
               "even": "evenly (nothing counted)"}  # fmt: skip
        listed = "; ".join(
            f"{w} {how[str(rs[0]['basis'])]} ("
            + ", ".join(f"{r['model']} {float(str(r['frac'])):.1%}" for r in rs)
            + ")"
            for w, rs in sorted(several.items())
        )
        note += f"; {len(several)} serve several models, their cost split: {listed}"
    return note


class IdlePolicy(StrEnum):
    SEPARATE = "separate"
    WEIGHTED = "weighted"
    EVEN = "even"


class SharedGpuPolicy(StrEnum):
    REQUEST = "request"
    USAGE = "usage"


# Dimensions a cost query can group by. Workload dimensions come from attribution;
# infrastructure dimensions come from the node.
ATTRIBUTED_DIMENSIONS = (
    "team",
    "project",
    "model",
    "environment",
    "experiment",
    "cost_center",
    "owner",
)
INFRA_DIMENSIONS = (
    "namespace",
    "workload",
    "node",
    "gpu_model",
    "provider",
    "region",
    "instance_type",
)
ALL_DIMENSIONS = ATTRIBUTED_DIMENSIONS + INFRA_DIMENSIONS


def normalise_dimension(name: str) -> str:
    """CLI spelling ('gpu-model', 'cost-center') to the column name."""
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class CostRow:
    """One group of the allocation: money in exact dollars, hours in exact hours."""

    key: dict[str, str]
    gpu_hours: Decimal
    gpu_cost: Decimal
    cpu_cost: Decimal
    ram_cost: Decimal
    idle_cost: Decimal  # idle shared into this row by the idle policy
    waste_cost: Decimal
    used_gpu_hours: Decimal
    efficiency_signals: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    units: UnitCounts | None = None

    @property
    def total_cost(self) -> Decimal:
        return self.gpu_cost + self.cpu_cost + self.ram_cost

    @property
    def gpu_efficiency(self) -> Decimal | None:
        if self.gpu_hours <= 0 or self.is_bucket(IDLE) or self.is_bucket(UNPRICED):
            return None
        return min(Decimal(1), self.used_gpu_hours / self.gpu_hours)

    def is_bucket(self, bucket: str) -> bool:
        return bool(self.key) and all(v == bucket for v in self.key.values())

    def to_dict(self, places: int = 6) -> dict[str, Any]:
        eff = self.gpu_efficiency
        out: dict[str, Any] = {"key": dict(self.key)}
        if self.start is not None:
            out["start"], out["end"] = self.start, self.end
        out.update(
            {
                "gpu_hours": float(quantize(self.gpu_hours, places)),
                "gpu_cost": float(quantize(self.gpu_cost, places)),
                "cpu_cost": float(quantize(self.cpu_cost, places)),
                "ram_cost": float(quantize(self.ram_cost, places)),
                "idle_cost": float(quantize(self.idle_cost, places)),
                "total_cost": float(quantize(self.total_cost, places)),
                "gpu_efficiency": None if eff is None else float(quantize(eff, 4)),
                "efficiency_signal": ", ".join(self.efficiency_signals) or None,
                "waste_cost": float(quantize(self.waste_cost, places)),
                "used_gpu_hours": float(quantize(self.used_gpu_hours, places)),
            }
        )
        if self.units is not None:
            out["units"] = {
                "requests": self.units.requests,
                "prompt_tokens": self.units.prompt_tokens,
                "generation_tokens": self.units.generation_tokens,
                "prefill_seconds": self.units.prefill_seconds,
                "decode_seconds": self.units.decode_seconds,
                "jobs": self.units.jobs,
                "processing_seconds": self.units.processing_seconds,
                **self.units.costs(self.total_cost, self.gpu_hours),
            }
        return out


UNIT_COUNTS = ("requests", "prompt_tokens", "generation_tokens", "prefill_seconds",
               "decode_seconds", "jobs", "processing_seconds")  # fmt: skip
# what each `--unit` counts, and the units columns a CSV of such a report adds
UNITS = {
    "tokens": ("prompt_tokens", "generation_tokens"),
    "requests": ("requests",),
    "jobs": ("jobs",),
    "minutes": ("processing_seconds",),
}


@dataclass(frozen=True)
class UnitCounts:
    """What a scope served in a window (DESIGN §2.10): counter increases. `jobs` are jobs
    completed (a job counter's, or Slurm jobs that ended in the window, a job on several
    nodes counted once); `processing_seconds` their processing time by the job counters."""

    requests: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    jobs: float = 0.0
    processing_seconds: float = 0.0

    def costs(self, cost: Decimal, gpu_hours: Decimal) -> dict[str, float | None]:
        """Cost per request, per 1M tokens (all, prompt, generation), per GPU-hour, per job
        and per processing minute (the scope's cost in the window over what it completed
        in it).

        Prompt and generation tokens split the cost by prefill and decode time where the
        server reports them; without them only the cost per 1M tokens of both is given."""

        def per(amount: Decimal, n: float, scale: float = 1.0) -> float | None:
            return float(amount) / n * scale if n > 0 else None

        tokens = self.prompt_tokens + self.generation_tokens
        busy = self.prefill_seconds + self.decode_seconds
        out: dict[str, float | None] = {
            "cost_per_request": per(cost, self.requests),
            "cost_per_1m_tokens": per(cost, tokens, 1e6),
            "cost_per_1m_prompt_tokens": None,
            "cost_per_1m_generation_tokens": None,
            "cost_per_gpu_hour": float(cost / gpu_hours) if gpu_hours > 0 else None,
            "cost_per_job": per(cost, self.jobs),
            "cost_per_processing_minute": per(cost, self.processing_seconds, 60.0),
        }
        if busy > 0:
            prompt_cost = cost * Decimal(self.prefill_seconds / busy)
            out["cost_per_1m_prompt_tokens"] = per(prompt_cost, self.prompt_tokens, 1e6)
            out["cost_per_1m_generation_tokens"] = per(
                cost - prompt_cost, self.generation_tokens, 1e6
            )
        return out


@dataclass(frozen=True)
class UnpricedNode:
    node: str
    instance_type: str | None
    gpu_model: str | None
    gpu_count: int
    gpu_hours: Decimal
    reason: str


@dataclass(frozen=True)
class CostReport:
    window: Window
    step: str | None
    by: tuple[str, ...]
    idle: IdlePolicy
    shared_gpu: SharedGpuPolicy
    asset_cost: Decimal
    rows: list[CostRow]
    unpriced: list[UnpricedNode] = field(default_factory=list)
    currency: str = "USD"
    notes: list[str] = field(default_factory=list)

    @property
    def total_cost(self) -> Decimal:
        return sum((r.total_cost for r in self.rows), ZERO)

    def bucket_total(self, bucket: str) -> Decimal:
        return sum((r.total_cost for r in self.rows if r.is_bucket(bucket)), ZERO)

    def table(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """The rows flat, for CSV: the columns, and each row's dict (key fields inline)."""
        columns = ("start", "end", *self.by, "gpu_hours", "gpu_cost", "cpu_cost", "ram_cost",
                   "idle_cost", "total_cost", "gpu_efficiency", "efficiency_signal",
                   "waste_cost")  # fmt: skip
        rows = [{**{k: v for k, v in r.to_dict().items() if k != "key"}, **r.key}
                for r in self.rows]  # fmt: skip
        if any(r.units is not None for r in self.rows):  # --unit: counts and unit costs inline
            for row in rows:
                row.update(row.pop("units", None) or {})
            columns += (*UNIT_COUNTS, *UnitCounts().costs(ZERO, ZERO))
        return columns, rows

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostReport:
        """A report as `to_dict` wrote it (a server's answer): amounts as written, to 6
        places."""

        def dec(value: Any) -> Decimal:
            return Decimal(str(value)) if value is not None else ZERO

        rows = []
        for r in d["rows"]:
            units = r.get("units")
            rows.append(CostRow(
                key=dict(r["key"]), gpu_hours=dec(r["gpu_hours"]), gpu_cost=dec(r["gpu_cost"]),
                cpu_cost=dec(r["cpu_cost"]), ram_cost=dec(r["ram_cost"]),
                idle_cost=dec(r["idle_cost"]), waste_cost=dec(r["waste_cost"]),
                used_gpu_hours=dec(r.get("used_gpu_hours")),
                efficiency_signals=tuple(
                    s for s in (r.get("efficiency_signal") or "").split(", ") if s),
                start=r.get("start"), end=r.get("end"),
                units=UnitCounts(**{k: units.get(k, 0.0) for k in UNIT_COUNTS})
                if units else None,
            ))  # fmt: skip
        unpriced = [
            UnpricedNode(node=u["node"], instance_type=u["instance_type"],
                         gpu_model=u["gpu_model"], gpu_count=u["gpu_count"],
                         gpu_hours=dec(u["gpu_hours"]), reason=u["reason"])
            for u in d.get("unpriced", [])
        ]  # fmt: skip
        window = Window(parse_instant(d["window"]["start"]), parse_instant(d["window"]["end"]))
        return cls(window, d["step"], tuple(d["by"]), IdlePolicy(d["idle"]),
                   SharedGpuPolicy(d["shared_gpu"]), dec(d["asset_cost"]), rows, unpriced,
                   d["currency"], list(d.get("notes", [])))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.iso(),
            "step": self.step,
            "by": list(self.by),
            "currency": self.currency,
            "idle": self.idle.value,
            "shared_gpu": self.shared_gpu.value,
            "asset_cost": float(quantize(self.asset_cost)),
            "total_cost": float(quantize(self.total_cost)),
            "rows": [r.to_dict() for r in self.rows],
            "unpriced": [
                {
                    "node": u.node,
                    "instance_type": u.instance_type,
                    "gpu_model": u.gpu_model,
                    "gpu_count": u.gpu_count,
                    "gpu_hours": float(quantize(u.gpu_hours)),
                    "reason": u.reason,
                }
                for u in self.unpriced
            ],
            "notes": list(self.notes),
        }
