"""The one shared-GPU split (DESIGN §2.4): a sample's time, in integer units, cut among its
holders by weights so that the parts sum exactly to the whole.

Every source uses it: dcgm-exporter scrapes (pods on a time-sliced GPU, MIG instances by
slice weight), the NVML agent and nvidia-smi logs (processes, evenly or by SM use), and the
demo fleet. The rule:
  1. each part is its exact quota, `total × weight / sum of weights`, rounded down;
  2. the units left over (always fewer than the parts whose quota has a fraction) go one
     each to those parts, from the last backwards;
  3. when every weight is zero (nothing was measured) the split is even.
So the parts sum to the whole, each part is its quota rounded down or up, a zero weight
gets nothing (unless all are zero), and equal weights give parts that differ by at most
one unit, the later parts taking the extra: 10 among three is 3, 3, 4. With one unit left
over, the common case, the last part takes it, as it did in each source before the rule
lived here.

Weights are exact: ints, Fractions, Decimals, or floats taken at their exact binary value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Any

Weight = int | Fraction | Decimal | float


def split_exact(total: int, weights: Sequence[Weight]) -> list[int]:
    """`total` cut into `len(weights)` integer parts in proportion to `weights` (rules 1-3
    above). Raises ValueError for a negative total, no weights, or a weight that is
    negative or not finite."""
    if total < 0:
        raise ValueError(f"cannot split a negative total ({total})")
    if not weights:
        raise ValueError("no parts to split among")
    ratios = [_ratio(w) for w in weights]
    den = lcm(*(d for _, d in ratios))
    scaled = [n * (den // d) for n, d in ratios]
    whole = sum(scaled)
    if whole == 0:
        return split_even(total, len(weights))
    parts: list[int] = []
    fractional: list[int] = []
    for i, w in enumerate(scaled):
        quota, rest = divmod(total * w, whole)
        parts.append(quota)
        if rest:
            fractional.append(i)
    left = total - sum(parts)
    for i in fractional[len(fractional) - left :]:
        parts[i] += 1
    return parts


def split_even(total: int, parts: int) -> list[int]:
    """`total` cut into `parts` equal integer parts; the last `total % parts` get one more
    (the same as `split_exact` with equal weights)."""
    if total < 0:
        raise ValueError(f"cannot split a negative total ({total})")
    if parts < 1:
        raise ValueError("no parts to split among")
    base, left = divmod(total, parts)
    return [base] * (parts - left) + [base + 1] * left


def split_by_use(total: int, uses: Sequence[Weight | None]) -> list[int]:
    """`total` cut by measured use (DESIGN §2.4 `usage` policy): in proportion to `uses`
    when every one is known (None = not measured) and some is above zero, else evenly."""
    known = [u for u in uses if u is not None]
    if len(known) < len(uses):
        return split_even(total, len(uses))
    return split_exact(total, known)


def _ratio(weight: Weight) -> tuple[int, int]:
    try:
        num, den = weight.as_integer_ratio()
    except (ValueError, OverflowError) as exc:  # NaN or infinity
        raise ValueError(f"weight {weight!r} is not a finite number") from exc
    if num < 0:
        raise ValueError(f"weight {weight!r} is negative")
    return num, den


def gpus_from_capacity(node: Mapping[str, Any], advertised: float) -> int | None:
    """Physical GPUs from the GPU resources a node advertises (Kubernetes capacity
    `nvidia.com/gpu`, `nvidia.com/gpu.shared`), for a node without GFD's
    `nvidia.com/gpu.count` label: time-slicing advertises each GPU `gpu_replicas` times.
    None under a MIG strategy, where the resources count MIG devices (`single`) or only the
    GPUs not in MIG mode (`mixed`), not GPUs. The one rule for the Kubernetes dump and API
    and the Prometheus path."""
    if node.get("mig_strategy") not in (None, "", "none"):
        return None
    replicas = node.get("gpu_replicas") or 1
    return int(advertised // replicas) if advertised >= 0 else None
