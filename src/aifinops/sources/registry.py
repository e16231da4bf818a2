"""The sources aifinops reads, by name: what each needs and how `collect` runs it.

Every source is one module (DESIGN §6) behind the same small interface, which the service
drives: given its settings and the time, read what is new and hand the facts to the store.
Three ways of running:
- `instant`: scrape now (a `/metrics` page): each run is one sample at the time of the run;
- `range`: pull a window, from the source's checkpoint (or `backfill` before now) up to
  now: after a restart the window starts where the last good run ended, so nothing is
  missed and nothing is read twice;
- `snapshot`: read the whole current state (inventory, accounting, allocations), which
  replaces what the same source said before.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceKind:
    name: str
    module: str
    mode: str  # instant | range | snapshot
    needs: tuple[str, ...]  # settings a configured source must give
    description: str
    default_interval: str


KINDS: dict[str, SourceKind] = {
    k.name: k
    for k in (
        SourceKind("dcgm", "aifinops.sources.dcgm", "instant", ("url",),
                   "NVIDIA dcgm-exporter /metrics: GPU usage, pods, MIG, energy", "30s"),
        SourceKind("prometheus", "aifinops.sources.prometheus", "range", ("url",),
                   "Prometheus/Thanos/Mimir API: dcgm-exporter and kube-state-metrics series",
                   "5m"),
        SourceKind("kubernetes", "aifinops.sources.kube_api", "snapshot", (),
                   "Kubernetes API: nodes, pods, namespaces", "10m"),
        SourceKind("inference", "aifinops.sources.inference", "instant", ("url",),
                   "vLLM, SGLang, TGI, Triton or KServe /metrics: requests and tokens", "1m"),
        SourceKind("opencost", "aifinops.sources.opencost", "snapshot", ("url",),
                   "OpenCost /allocation/compute", "1h"),
        SourceKind("slurm", "aifinops.sources.slurm", "snapshot", ("path",),
                   "sacct --json or --parsable2 output written to a file", "15m"),
        SourceKind("nvidia-smi", "aifinops.sources.nvidia_smi", "snapshot", ("path",),
                   "a directory of nvidia-smi logs (with an owners file)", "15m"),
    )
}  # fmt: skip
