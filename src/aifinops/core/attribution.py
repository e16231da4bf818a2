"""Attribution rules (DESIGN §2.7): which labels name a workload's team, project, model...

A dimension resolves, in order, from the workload's own labels (first key that is set),
then the namespace's labels (same keys), then — for team only — the namespace-to-team map.
What resolves to nothing is `__unallocated__`. Workloads in overhead namespaces are
`__shared__`. The engine applies the same rules set-at-a-time; `resolve_dimensions` is the
row-at-a-time statement of them, used for small inputs and as the reference in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aifinops.core.model import ATTRIBUTED_DIMENSIONS, SHARED, UNALLOCATED


def _keys(*names: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out += [f"ai-finops.io/{name}", name]
    return tuple(out)


DEFAULT_LABEL_KEYS: dict[str, tuple[str, ...]] = {
    "team": (*_keys("team"), "app.kubernetes.io/team", "owner-team"),
    "project": (*_keys("project"), "app.kubernetes.io/part-of"),
    "model": _keys("model"),
    "environment": (*_keys("environment"), "env"),
    "experiment": _keys("experiment"),
    "cost_center": (*_keys("cost-center"), "cost_center", "costcenter"),
    "owner": (*_keys("owner"), "user"),
}

DEFAULT_SHARED_NAMESPACES = ("kube-system", "monitoring", "gpu-operator")


@dataclass(frozen=True)
class AttributionRules:
    label_keys: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_LABEL_KEYS)
    )
    namespace_teams: Mapping[str, str] = field(default_factory=dict)
    shared_namespaces: tuple[str, ...] = DEFAULT_SHARED_NAMESPACES

    def keys_for(self, dimension: str) -> tuple[str, ...]:
        return tuple(self.label_keys.get(dimension, (dimension,)))


def resolve_dimensions(
    rules: AttributionRules,
    namespace: str | None,
    labels: Mapping[str, str],
    namespace_labels: Mapping[str, str] | None = None,
    dimensions: tuple[str, ...] = ATTRIBUTED_DIMENSIONS,
) -> dict[str, str]:
    """Resolve the attributed dimensions of one workload."""
    if namespace and namespace in rules.shared_namespaces:
        return {d: SHARED for d in dimensions}
    ns_labels = namespace_labels or {}
    out: dict[str, str] = {}
    for dim in dimensions:
        value = _first(labels, rules.keys_for(dim)) or _first(ns_labels, rules.keys_for(dim))
        if value is None and dim == "team" and namespace:
            value = rules.namespace_teams.get(namespace)
        out[dim] = value or UNALLOCATED
    return out


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return None
