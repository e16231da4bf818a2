"""NVIDIA dcgm-exporter `/metrics` scrapes -> GPU samples with their holders.

A scrape is one instant. Every `DCGM_FI_*` series is read; the ones the cost model needs are:
- usage, preferring `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, then `DCGM_FI_PROF_SM_ACTIVE` (both
  ratios 0-1), then `DCGM_FI_DEV_GPU_UTIL` (percent; never for a MIG instance, for which
  the device figure says nothing), with the signal used recorded on the node;
- energy from `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ since boot), power, memory used;
- the holder from `pod`, `namespace` (and `container`) when dcgm-exporter maps GPUs to pods
  (or `exported_pod`/`exported_namespace` after a Prometheus scrape renamed them).
Devices are keyed by `Hostname` (or the newer `hostname`) and `UUID` (or `gpu`); MIG
instances by `GPU_I_ID`, weighted by the compute slices of `GPU_I_PROFILE` (`3g.40gb` = 3/7).
A GPU series repeated for several pods is a shared (time-sliced) GPU: its time is stored
split evenly among them (`core.shares`, like every other split of a GPU's time), and so is
the busy time. A scrape knows neither the node's time-slicing replicas nor the pods'
requests, and the inventory that does may be read before or after it: the `request`
policy's `request / replicas` share is applied by the allocation engine, from the stored
nodes and workloads (store/allocate.py step 1b, docs/decisions/0011). Pod rows made here
carry no request: only the cluster says what a pod asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from aifinops.core.shares import split_even, split_exact
from aifinops.sources.exposition import Exposition, finite, lines_named, parse
from aifinops.sources.facts import MICRO, SampleFacts, UsageRows

SIGNALS = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1.0),
    ("DCGM_FI_PROF_SM_ACTIVE", 1.0),
    ("DCGM_FI_DEV_GPU_UTIL", 100.0),
)
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER = "DCGM_FI_DEV_POWER_USAGE"
FB_USED = "DCGM_FI_DEV_FB_USED"
_PROFILE = re.compile(r"^(\d+)g\.")


@dataclass
class Instance:
    """A whole GPU (mig_id None) or one MIG instance of it, as one scrape saw it."""

    mig_id: str | None
    profile: str | None = None
    pods: set[tuple[str, str]] = field(default_factory=set)
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class Device:
    host: str
    uuid: str
    index: str | None
    model: str | None
    instances: dict[str | None, Instance] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # device-level series


@dataclass
class Scrape:
    ts_ms: int
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    other_metrics: int = 0  # samples of metrics that are not DCGM's


def read_scrapes(
    text: str, where: str, at_ms: int, default_host: str | None = None
) -> list[Scrape]:
    """All scrapes in a text: one at `at_ms`, or one per explicit sample timestamp."""
    expo = parse(text, where)
    collector = Collector(default_host)
    for s in expo.samples:
        collector.add(s.ts_ms if s.ts_ms is not None else at_ms, s.name, s.labels, s.value, s.line)
    return collector.scrapes(where, expo.problems)


class Collector:
    """Gathers DCGM series values, from a scrape or a Prometheus query, into scrapes."""

    def __init__(self, default_host: str | None = None):
        self.default_host = default_host
        self.by_ts: dict[int, Scrape] = {}
        self.skipped: dict[str, set[str]] = {}
        self.counts: dict[str, int] = {}
        self.lines: dict[str, list[int]] = {}  # where the skipped samples are, if in a file

    def _skip(self, why: str, name: str, line: int | None) -> None:
        self.skipped.setdefault(why, set()).add(name)
        self.counts[why] = self.counts.get(why, 0) + 1
        if line is not None:
            self.lines.setdefault(why, []).append(line)

    def add(
        self, ts: int, name: str, lab: dict[str, str], value: float, line: int | None = None
    ) -> None:
        """One sample; `line`: its line in the scrape text, named if it is skipped."""
        scrape = self.by_ts.get(ts)
        if scrape is None:
            scrape = self.by_ts[ts] = Scrape(ts)
        if not name.startswith("DCGM_FI_"):
            scrape.other_metrics += 1
            return
        if not finite(value):
            self._skip("value is NaN or infinite", name, line)
            return
        host = lab.get("Hostname") or lab.get("hostname") or self.default_host
        uuid = lab.get("UUID") or lab.get("uuid") or (f"gpu{lab['gpu']}" if "gpu" in lab else None)
        if host is None:
            self._skip("no Hostname label (give --host)", name, line)
            return
        if uuid is None:
            self._skip("no UUID or gpu label", name, line)
            return
        dev = scrape.devices.get((host, uuid))
        if dev is None:
            dev = scrape.devices[(host, uuid)] = Device(
                host, uuid, lab.get("gpu"), lab.get("modelName") or lab.get("DCGM_FI_DEV_NAME")
            )
        mig_id = lab.get("GPU_I_ID") or None
        inst = dev.instances.get(mig_id)
        if inst is None:
            inst = dev.instances[mig_id] = Instance(mig_id, lab.get("GPU_I_PROFILE"))
        # After a Prometheus scrape of the exporter pod, `pod`/`namespace` may name the
        # exporter itself and the workload's labels become `exported_pod`/`exported_namespace`
        if lab.get("exported_pod"):
            pod, ns = lab["exported_pod"], lab.get("exported_namespace")
        else:
            pod, ns = lab.get("pod"), lab.get("namespace")
        if pod:
            inst.pods.add((ns or "default", pod))
        elif lab.get("hpc_job"):  # dcgm-exporter's HPC job mapping (Slurm)
            inst.pods.add(("slurm", f"{lab['hpc_job']}/{host}"))
        inst.values[name] = value
        if mig_id is None:
            dev.values[name] = value

    def scrapes(self, where: str, problems: list[str] | None = None) -> list[Scrape]:
        scrapes = [self.by_ts[t] for t in sorted(self.by_ts)]
        out = list(problems or [])
        for why, names in sorted(self.skipped.items()):
            listed = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            out.append(
                f"{where}: skipped {self.counts[why]} sample(s), {why}: {listed}"
                + lines_named(self.lines.get(why, []))
            )
        if scrapes:
            scrapes[0].problems = out
        return scrapes


_ONE = Fraction(1)


def mig_weight(profile: str | None, model: str | None) -> Fraction:
    """Compute slices of a MIG profile over the GPU's total (7; 4 on an A30)."""
    m = _PROFILE.match(profile or "")
    if m is None:
        return Fraction(1, 7)
    total = 4 if model and "A30" in model.upper() else 7
    return Fraction(min(int(m.group(1)), total), total)


def usage_signal(inst: Instance, device: Device) -> tuple[str | None, float | None]:
    """The best usage signal of an instance (a ratio 0-1) and its name."""
    for name, scale in SIGNALS:
        if name == "DCGM_FI_DEV_GPU_UTIL" and inst.mig_id is not None:
            continue
        value = inst.values.get(name)
        if value is None and inst.mig_id is None:
            value = device.values.get(name)
        if value is not None:
            return name, min(max(value / scale, 0.0), 1.0)
    return None, None


def to_facts(scrapes: list[Scrape], interval_ms: int, source: str = "dcgm") -> SampleFacts:
    """GPU samples (each scrape covers `interval_ms`), nodes, pods and energy readings."""
    usage = UsageRows()
    nodes: dict[str, dict[str, Any]] = {}
    pods: dict[str, dict[str, Any]] = {}
    energy: list[dict[str, Any]] = []
    notes: list[str] = []
    no_signal: set[str] = set()
    shared: dict[str, set[str]] = {}  # node -> GPUs (or MIG instances) seen with several pods
    total = interval_ms * MICRO
    for scrape in scrapes:
        notes += scrape.problems
        for dev in scrape.devices.values():
            n = nodes.setdefault(
                dev.host,
                {
                    "node_id": dev.host,
                    "gpu_model": dev.model,
                    "gpus": set(),
                    "signals": set(),
                    "mig": False,
                },
            )
            n["gpus"].add(dev.uuid)
            parts = list(dev.instances.values())
            mig = [i for i in parts if i.mig_id is not None]
            if mig:
                n["mig"] = True
                parts = mig
            weights = [mig_weight(i.profile, dev.model) if i.mig_id else _ONE for i in parts]
            # MIG capacity not carved into any instance is idle: it takes the last part
            uncarved = max(_ONE - sum(weights), Fraction(0))
            *shares, left = split_exact(total, [*weights, uncarved])
            for inst, weight, share in zip(parts, weights, shares, strict=True):
                gpu_id = dev.uuid if inst.mig_id is None else f"{dev.uuid}/{inst.mig_id}"
                signal, busy = usage_signal(inst, dev)
                if signal is None:
                    no_signal.add(gpu_id)
                    busy = 0.0
                else:
                    n["signals"].add(signal)
                holders = sorted(inst.pods)
                if not holders:
                    usage.add(scrape.ts_ms, dev.host, gpu_id, None, share, 0)
                    continue
                if len(holders) > 1:
                    shared.setdefault(dev.host, set()).add(gpu_id)
                for (ns, pod), part in zip(holders, split_even(share, len(holders)), strict=True):
                    wid = f"{ns}/{pod}"
                    busy_u = round(
                        total
                        * weight.numerator
                        * (busy or 0.0)
                        / (weight.denominator * len(holders))
                    )
                    usage.add(scrape.ts_ms, dev.host, gpu_id, wid, part, busy_u)
                    w = pods.setdefault(
                        wid,
                        {
                            "workload_id": wid,
                            "kind": "pod",
                            "namespace": ns,
                            "name": pod,
                            "node_id": dev.host,
                            "start_ms": scrape.ts_ms,
                            "end_ms": scrape.ts_ms + interval_ms,
                            "gpu_resource": (
                                f"nvidia.com/mig-{inst.profile}"
                                if inst.mig_id
                                else "nvidia.com/gpu"
                            ),
                            "labels": {},
                            "source": source,
                        },
                    )
                    w["start_ms"] = min(w["start_ms"], scrape.ts_ms)
                    w["end_ms"] = max(w["end_ms"], scrape.ts_ms + interval_ms)
            if left > 0:
                usage.add(scrape.ts_ms, dev.host, dev.uuid, None, left, 0)
            if ENERGY in dev.values or POWER in dev.values:
                energy.append(
                    {
                        "ts_ms": scrape.ts_ms,
                        "node_id": dev.host,
                        "gpu_id": dev.uuid,
                        "energy_mj": dev.values.get(ENERGY),
                        "power_w": dev.values.get(POWER),
                        "fb_used_mib": dev.values.get(FB_USED),
                        "source": source,
                    }
                )
    if no_signal:
        notes.append(
            f"{len(no_signal)} GPU(s) or MIG instance(s) report no usage signal "
            "(GR_ENGINE_ACTIVE, SM_ACTIVE or GPU_UTIL); their held time counts as unused"
        )
    if shared:
        hosts = ", ".join(sorted(shared)[:5]) + (", ..." if len(shared) > 5 else "")
        notes.append(
            f"{sum(len(g) for g in shared.values())} GPU(s) or MIG instance(s) shared by "
            f"several pods (time-slicing) on {hosts}: stored split evenly among the pods; the "
            "cost report gives each pod request / replicas where the cluster's inventory "
            "(Kubernetes dump or API, Prometheus) says the node's replicas and pods' requests"
        )
    node_rows = []
    for n in nodes.values():
        signals = [name for name, _ in SIGNALS if name in n["signals"]]
        node_rows.append(
            {
                "node_id": n["node_id"],
                "gpu_model": n["gpu_model"],
                "gpu_count": len(n["gpus"]),
                "mig_strategy": "mixed" if n["mig"] else None,
                "util_signal": signals[0] if signals else None,
                "labels": {},
                "source": source,
            }
        )
    stamps = [s.ts_ms for s in scrapes]
    table = usage.table()
    return SampleFacts(
        table,
        node_rows,
        list(pods.values()),
        energy,
        min(stamps) if stamps else 0,
        (max(stamps) + interval_ms) if stamps else 0,
        notes,
        max(stamps) if stamps else 0,
    )


__all__ = ["Exposition", "SampleFacts", "Scrape", "mig_weight", "read_scrapes", "to_facts"]
