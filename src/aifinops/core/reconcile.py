"""Reconciliation (DESIGN §2.9): the list-price allocation scaled to what the bill says.

Pure functions of an allocation (rows that keep their node, bucket rows included) and of
the billed EffectiveCost of each node over the same window. A node's part of each row is
multiplied by `billed / list` of that node, so the rows of a node add up to its bill —
spot prices, savings plans, reservations and credits included, since EffectiveCost carries
them. A node the bill does not cover keeps its list price and is counted as `unbilled`.
A node with no list cost in the rows takes its bill in proportion to GPU-hours (the
service prices such nodes from the bill first, `bills_service.reconcile`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aifinops.core.model import CostRow
from aifinops.core.money import ZERO, quantize
from aifinops.core.windows import Window


@dataclass(frozen=True)
class ReconciledRow:
    key: dict[str, str]
    list_cost: Decimal
    billed_cost: Decimal
    unbilled_cost: Decimal  # the part of list_cost on nodes the bill does not cover

    @property
    def difference(self) -> Decimal:
        return self.billed_cost - self.list_cost

    def to_dict(self, places: int = 6) -> dict[str, Any]:
        return {
            "key": dict(self.key),
            "list_cost": float(quantize(self.list_cost, places)),
            "billed_cost": float(quantize(self.billed_cost, places)),
            "difference": float(quantize(self.difference, places)),
            "unbilled_cost": float(quantize(self.unbilled_cost, places)),
        }


@dataclass(frozen=True)
class NodeBill:
    """One node of the allocation and what its bill says."""

    node: str
    resource_id: str | None
    list_cost: Decimal
    billed_cost: Decimal | None  # None: not in the bill

    def to_dict(self, places: int = 6) -> dict[str, Any]:
        billed = self.billed_cost
        factor = billed / self.list_cost if billed is not None and self.list_cost else None
        return {
            "node": self.node,
            "resource_id": self.resource_id,
            "list_cost": float(quantize(self.list_cost, places)),
            "billed_cost": None if billed is None else float(quantize(billed, places)),
            "factor": None if factor is None else float(quantize(factor, 6)),
        }


@dataclass(frozen=True)
class OtherSpend:
    """Billed spend in the window that is not a node of the allocation."""

    provider: str
    service_category: str
    currency: str
    billed_cost: Decimal
    effective_cost: Decimal

    def to_dict(self, places: int = 6) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "service_category": self.service_category,
            "currency": self.currency,
            "billed_cost": float(quantize(self.billed_cost, places)),
            "effective_cost": float(quantize(self.effective_cost, places)),
        }


@dataclass
class ReconciledReport:
    window: Window
    by: tuple[str, ...]
    currency: str
    rows: list[ReconciledRow]
    nodes: list[NodeBill]
    other: list[OtherSpend]
    notes: list[str] = field(default_factory=list)

    def total(self, name: str) -> Decimal:
        return sum((getattr(r, name) for r in self.rows), ZERO)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.iso(),
            "by": list(self.by),
            "currency": self.currency,
            "list_cost": float(quantize(self.total("list_cost"))),
            "billed_cost": float(quantize(self.total("billed_cost"))),
            "difference": float(quantize(self.total("difference"))),
            "unbilled_cost": float(quantize(self.total("unbilled_cost"))),
            "rows": [r.to_dict() for r in self.rows],
            "nodes": [n.to_dict() for n in self.nodes],
            "other_spend": [o.to_dict() for o in self.other],
            "notes": list(self.notes),
        }


def node_costs(rows: Iterable[CostRow]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Each node's list cost and GPU-hours over rows that carry a `node` key."""
    cost: dict[str, Decimal] = {}
    gpu: dict[str, Decimal] = {}
    for r in rows:
        n = r.key["node"]
        cost[n] = cost.get(n, ZERO) + r.total_cost
        gpu[n] = gpu.get(n, ZERO) + r.gpu_hours
    return cost, gpu


def scale_to_bill(
    rows: Iterable[CostRow],
    by: Sequence[str],
    billed: Mapping[str, Decimal],
    unlisted: Set[str] = frozenset(),
) -> tuple[list[ReconciledRow], dict[str, Decimal]]:
    """Rows grouped by `by`, each with its list cost and its cost scaled to `billed`
    (node -> billed EffectiveCost). `rows` must carry a `node` key on every row, buckets
    included. Nodes in `unlisted` were priced from their bill: they have no list cost.
    Returns the rows and each node's cost in `rows`."""
    rows = list(rows)
    node_list, node_gpu = node_costs(rows)
    out: dict[tuple[str, ...], list[Decimal]] = {}
    keys: dict[tuple[str, ...], dict[str, str]] = {}
    for r in rows:
        n = r.key["node"]
        key = {d: r.key[d] for d in by}
        k = tuple(key.values())
        keys.setdefault(k, key)
        acc = out.setdefault(k, [ZERO, ZERO, ZERO])
        if n not in unlisted:
            acc[0] += r.total_cost
        if n not in billed:
            acc[1] += r.total_cost
            acc[2] += r.total_cost
        elif node_list[n] > 0:
            acc[1] += r.total_cost * billed[n] / node_list[n]
        elif node_gpu[n] > 0:
            acc[1] += billed[n] * r.gpu_hours / node_gpu[n]
    result = [ReconciledRow(keys[k], *v) for k, v in out.items()]
    return result, node_list


def group_key(resource_id: str | None) -> str | None:
    """The resource a node's bill comes under when it is not its own: the scale set of an
    Azure scale-set instance (`aks-gpu-vmss/virtualMachines/3`, or the instance's full ARM
    id, -> `aks-gpu-vmss`); None for anything else."""
    parts = (resource_id or "").strip("/").lower().split("/")
    scale_set = len(parts) == 3 or (len(parts) > 3 and parts[-4] == "virtualmachinescalesets")
    return parts[-3] if scale_set and parts[-2] == "virtualmachines" else None


def resource_key(resource_id: str | None) -> str | None:
    """What a node's provider id and a bill's resource id have in common: the last path
    segment, lower-cased (`aws:///us-east-1a/i-0abc` and `i-0abc`; an Azure VM's ARM id and
    its name)."""
    if not resource_id:
        return None
    last = resource_id.rstrip("/").rsplit("/", 1)[-1].strip().lower()
    return last or None
