"""Kubernetes label keys as Prometheus-style exporters (kube-state-metrics, OpenCost) name
them, and back to the keys the attribution rules use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def sanitize(key: str) -> str:
    """`ai-finops.io/team` -> `ai_finops_io_team`."""
    return "".join(c if c.isalnum() else "_" for c in key)


def map_labels(labels: Mapping[str, Any] | None, wanted: Iterable[str]) -> dict[str, str]:
    """Labels named `label_<sanitized>` (or plain sanitized names) stored under the configured
    key each stands for, so `ai-finops.io/team` still resolves; others under their own name."""
    back = {sanitize(k): k for k in wanted}
    out = {}
    for key, value in (labels or {}).items():
        if value in (None, ""):
            continue
        key = key.removeprefix("label_")
        out[back.get(key, key)] = str(value)
    return out
