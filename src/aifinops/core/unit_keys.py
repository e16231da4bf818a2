"""Which cost row a workload's counted units (tokens, requests, jobs, processing time) belong
to: the allocation's attribution (store/allocate.py, step 5) applied to one workload.

The engine groups GPU time by dimensions set-at-a-time; the counters are few (one series per
pod and model or queue), so their key is worked out here, one workload at a time, with the
same rules: a dimension from the workload's labels, then its namespace's labels (then the
namespace's team mapping). The model is the one a counter names (a job counter's queue): a
model's tokens are that model's even on a pod whose label names another (that pod's cost
goes to its label's model, decision 0012, which then shows no tokens); counts that name no
model (Slurm jobs) take the pod's label, then the namespace's. Counters can be grouped by the
attributed dimensions, the namespace and the workload; infrastructure dimensions (node, GPU
model, provider, region, instance type) cannot be, a workload's units not being split by
node.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifinops.core.attribution import AttributionRules, resolve_dimensions
from aifinops.core.model import ATTRIBUTED_DIMENSIONS, UNALLOCATED

COUNTABLE_DIMENSIONS = (*ATTRIBUTED_DIMENSIONS, "namespace", "workload")


def unit_key(
    rules: AttributionRules,
    dims: tuple[str, ...],
    workload_id: str | None,
    counted_model: str | None,
    namespace: str | None,
    labels: Mapping[str, str],
    namespace_labels: Mapping[str, str],
) -> tuple[str, ...] | None:
    """The values of `dims` (countable dimensions only) of the cost row whose units a
    workload's counter adds to, or None where no such row takes units: a workload in a
    shared namespace (its cost is the `__shared__` bucket), or one the scrape named no pod
    for when the rows are per workload."""
    if namespace and namespace in rules.shared_namespaces:
        return None
    attributed = resolve_dimensions(rules, namespace, labels, namespace_labels)
    out: list[str] = []
    for dim in dims:
        if dim == "model":
            keys = rules.keys_for("model")
            own = next((labels[k] for k in keys if labels.get(k)), None)
            from_ns = next((namespace_labels[k] for k in keys if namespace_labels.get(k)), None)
            out.append(counted_model or own or from_ns or UNALLOCATED)
        elif dim == "workload":
            if workload_id is None:
                return None
            out.append(workload_id)
        elif dim == "namespace":
            out.append(namespace or UNALLOCATED)
        else:
            out.append(attributed[dim])
    return tuple(out)
