"""The allocation vocabulary: policies, buckets, and the cost report a query returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aifinops.core.money import ZERO, quantize
from aifinops.core.windows import Window

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
SHARED = "__shared__"
UNPRICED = "__unpriced__"
BUCKETS = (IDLE, UNALLOCATED, SHARED, UNPRICED)


class IdlePolicy(StrEnum):
    SEPARATE = "separate"
    WEIGHTED = "weighted"
    EVEN = "even"


class SharedGpuPolicy(StrEnum):
    REQUEST = "request"
    USAGE = "usage"


class SharedNamespacePolicy(StrEnum):
    KEEP = "keep"
    EVEN = "even"
    WEIGHTED = "weighted"


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
            }
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
