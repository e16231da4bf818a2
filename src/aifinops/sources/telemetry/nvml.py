"""The node agent: samples every GPU through NVML, ties each process to its owner, and
spools the records on disk until they are stored (or posted to a server).

Per GPU and tick: utilisation, memory, power, the energy counter, per-process memory and
SM use, and the GPM counters (SM utilisation, occupancy, tensor activity, DRAM bandwidth)
on GPUs that offer them. A process is owned by
- a Kubernetes pod, from the pod UID in its cgroup (`kubepods...pod<uid>...`);
- a Slurm job, from `job_<id>` in its cgroup (`slurm/uid_N/job_<id>`, `slurmstepd.scope/job_<id>`);
- else its Unix user (`/proc/<pid>/status` Uid), whose team a user-to-team map gives.

Records go to the current segment file of a spool directory, one JSON line per GPU and
tick; a full segment is closed (renamed `.jsonl`), and closed segments are shipped oldest
first and deleted only once stored. A segment stored twice (a crash between storing and
deleting) is recognised by its content and counts once; a segment left open by a crash is
closed and shipped at the next start. So nothing is lost or counted twice across restarts.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aifinops.core.shares import split_by_use, split_even
from aifinops.errors import InputError
from aifinops.sources.facts import MICRO, SampleFacts, UsageRows

# the usage signals, under the names stored as a node's `util_signal`; the GPM one is also
# the metric's NVML name and its key in a record's `gpm`
SIGNAL_GPM = "NVML_GPM_METRIC_SM_UTIL"
SIGNAL_UTIL = "nvmlDeviceGetUtilizationRates.gpu"


@dataclass
class ProcSample:
    pid: int
    used_mem: int | None = None
    sm: float | None = None  # percent of the GPU's SM time, from process utilisation


@dataclass
class GpuSample:
    ts_ms: int
    uuid: str
    util: float | None = None  # percent
    mem_used: int | None = None
    power_mw: float | None = None
    energy_mj: float | None = None
    name: str | None = None
    index: int | None = None
    procs: list[ProcSample] = field(default_factory=list)
    gpm: dict[str, float] = field(default_factory=dict)


# -- samplers ---------------------------------------------------------------------------------
class ReplaySampler:
    """Plays back a recorded NVML stream (`nvml_samples.jsonl`), one record per GPU tick."""

    def __init__(self, path: Path, names: Mapping[str, str] | None = None):
        if not path.is_file():
            raise InputError("no such file", where=str(path))
        self.path = path
        self.names = dict(names or {})

    def ticks(self) -> Iterator[list[GpuSample]]:
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InputError(
                        f"line {number} is not JSON: {error.msg}", where=str(self.path)
                    ) from error
                if rec.get("event") != "sample":
                    continue
                sm = {int(p["pid"]): p.get("sm") for p in rec.get("proc_util") or []}
                yield [
                    GpuSample(
                        ts_ms=round(float(rec["ts"]) * 1000),
                        uuid=rec["gpu_uuid"],
                        util=rec.get("gpu_util"),
                        mem_used=rec.get("mem_used"),
                        power_mw=rec.get("power_mw"),
                        energy_mj=rec.get("energy_mj"),
                        name=self.names.get(rec["gpu_uuid"]),
                        procs=[
                            ProcSample(int(p["pid"]), p.get("used_mem"), sm.get(int(p["pid"])))
                            for p in rec.get("procs") or []
                        ],
                        gpm={k: v for k, v in (rec.get("gpm") or {}).items() if _finite(v)},
                    )
                ]


class NvmlSampler:  # pragma: no cover - needs an NVIDIA GPU and driver
    """Live samples through nvidia-ml-py."""

    GPM_METRICS = (
        SIGNAL_GPM,
        "NVML_GPM_METRIC_SM_OCCUPANCY",
        "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
        "NVML_GPM_METRIC_DRAM_BW_UTIL",
        "NVML_GPM_METRIC_GRAPHICS_UTIL",
    )

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as error:
            raise InputError("nvidia-ml-py is not installed", where="agent") from error
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise InputError(
                f"NVML cannot start: {error}",
                where="agent",
                hint="run on a host with an NVIDIA driver (or use --replay FILE)",
            ) from error
        self.nv = pynvml
        self.handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]
        self.last_proc_ts: dict[int, int] = {}
        self.gpm_prev: dict[int, Any] = {}
        self.gpm_ok: dict[int, bool] = {}
        for i, h in enumerate(self.handles):
            try:
                self.gpm_ok[i] = bool(pynvml.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)
            except (pynvml.NVMLError, AttributeError):
                self.gpm_ok[i] = False

    def ticks(self) -> Iterator[list[GpuSample]]:
        while True:
            yield self.sample()

    def _try(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None

    def sample(self) -> list[GpuSample]:
        nv = self.nv
        now = int(time.time() * 1000)
        out = []
        for i, h in enumerate(self.handles):
            util = self._try(nv.nvmlDeviceGetUtilizationRates, h)
            mem = self._try(nv.nvmlDeviceGetMemoryInfo, h)
            procs = self._try(nv.nvmlDeviceGetComputeRunningProcesses, h) or []
            since = self.last_proc_ts.get(i, 0)
            proc_util = self._try(nv.nvmlDeviceGetProcessUtilization, h, since) or []
            self.last_proc_ts[i] = now * 1000
            sm = {p.pid: float(p.smUtil) for p in proc_util}
            gpm: dict[str, float] = {}
            if self.gpm_ok.get(i):
                cur = self._try(nv.nvmlGpmSampleAlloc)
                if cur is not None and self._try(nv.nvmlGpmSampleGet, h, cur) is not None:
                    prev = self.gpm_prev.get(i)
                    if prev is not None:
                        gpm = self._gpm(h, prev, cur)
                        nv.nvmlGpmSampleFree(prev)
                    self.gpm_prev[i] = cur
            name = self._try(nv.nvmlDeviceGetName, h)
            out.append(
                GpuSample(
                    ts_ms=now,
                    uuid=str(self._try(nv.nvmlDeviceGetUUID, h)),
                    util=float(util.gpu) if util is not None else None,
                    mem_used=int(mem.used) if mem is not None else None,
                    power_mw=self._try(nv.nvmlDeviceGetPowerUsage, h),
                    energy_mj=self._try(nv.nvmlDeviceGetTotalEnergyConsumption, h),
                    name=name.decode() if isinstance(name, bytes) else name,
                    index=i,
                    procs=[
                        ProcSample(p.pid, getattr(p, "usedGpuMemory", None), sm.get(p.pid))
                        for p in procs
                    ],
                    gpm=gpm,
                )
            )
        return out

    def _gpm(self, handle: Any, prev: Any, cur: Any) -> dict[str, float]:
        nv = self.nv
        metrics = nv.c_nvmlGpmMetricsGet_t()
        metrics.version = nv.NVML_GPM_METRICS_GET_VERSION
        metrics.sample1, metrics.sample2 = prev, cur
        ids = [getattr(nv, m) for m in self.GPM_METRICS]
        metrics.numMetrics = len(ids)
        for j, metric_id in enumerate(ids):
            metrics.metrics[j].metricId = metric_id
        if self._try(nv.nvmlGpmMetricsGet, metrics) is None:
            return {}
        return {
            name: float(metrics.metrics[j].value)
            for j, name in enumerate(self.GPM_METRICS)
            if _finite(metrics.metrics[j].value)
        }


# -- owners -----------------------------------------------------------------------------------
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")


@dataclass
class Owner:
    workload_id: str
    kind: str  # pod | slurm-job | user | process
    labels: dict[str, str] = field(default_factory=dict)
    pod_uid: str | None = None


class OwnerResolver:
    """pid -> owner, from `/proc/<pid>/cgroup` and `/proc/<pid>/status`."""

    def __init__(
        self,
        host: str,
        *,
        proc_root: Path = Path("/proc"),
        passwd: Path = Path("/etc/passwd"),
        pods: Mapping[str, str] | None = None,  # pod uid -> namespace/name
        user_teams: Mapping[str, str] | None = None,
    ):
        self.host = host
        self.proc_root = proc_root
        self.pods = {k.replace("_", "-"): v for k, v in (pods or {}).items()}
        self.user_teams = dict(user_teams or {})
        self.users = _read_passwd(passwd)
        self.cache: dict[int, Owner] = {}

    def owner(self, pid: int) -> Owner:
        if pid in self.cache:
            return self.cache[pid]
        found = self._resolve(pid)
        if found.kind != "process":  # an unknown pid may be a process not yet visible
            self.cache[pid] = found
        return found

    def _resolve(self, pid: int) -> Owner:
        try:
            cgroup = (self.proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            cgroup = ""
        m = _POD_UID.search(cgroup)
        if m:
            uid = m.group(1).replace("_", "-")
            name = self.pods.get(uid)
            return Owner(name or f"pod-uid/{uid}", "pod", {}, uid)
        m = _SLURM_JOB.search(cgroup)
        if m:
            return Owner(f"slurm/{m.group(1)}/{self.host}", "slurm-job")
        try:
            status = (self.proc_root / str(pid) / "status").read_text()
        except OSError:
            return Owner(f"{self.host}/pid-{pid}", "process")
        uid_match = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if uid_match is None:
            return Owner(f"{self.host}/pid-{pid}", "process")
        user = self.users.get(int(uid_match.group(1)), f"uid-{uid_match.group(1)}")
        labels = {"owner": user}
        if user in self.user_teams:
            labels["team"] = self.user_teams[user]
        return Owner(f"user/{user}@{self.host}", "user", labels)


def _read_passwd(path: Path) -> dict[int, str]:
    users: dict[int, str] = {}
    try:
        for line in path.read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                users[int(parts[2])] = parts[0]
    except OSError:  # no passwd file: users are named by their uid
        return users
    return users


# -- spool ------------------------------------------------------------------------------------
class Spool:
    """Segments of JSON lines: `open-<n>.part` while written, `seg-<n>.jsonl` when closed."""

    def __init__(self, directory: Path, per_segment: int = 60):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.per_segment = per_segment
        self.current: Path | None = None
        self.lines = 0
        for left in sorted(self.dir.glob("open-*.part")):  # a crash left it open
            self._close(left)
        self.counter = self._next_number() - 1  # names only order segments; content is the key

    def _next_number(self) -> int:
        numbers = []
        for p in [*self.dir.glob("open-*.part"), *self.dir.glob("seg-*.jsonl")]:
            tail = p.stem.split("-", 1)[1]
            if tail.isdigit():
                numbers.append(int(tail))
        return max(numbers, default=0) + 1

    def _close(self, path: Path) -> None:
        number = path.stem.split("-")[1]
        if path.stat().st_size == 0:
            path.unlink()
            return
        path.rename(self.dir / f"seg-{number}.jsonl")

    def append(self, records: list[dict[str, Any]]) -> None:
        if self.current is None:
            self.counter += 1
            self.current = self.dir / f"open-{self.counter:09d}.part"
            self.lines = 0
        with self.current.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.lines += 1
        if self.lines >= self.per_segment:
            self.rotate()

    def rotate(self) -> None:
        if self.current is not None:
            self._close(self.current)
            self.current = None

    def closed(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.jsonl"))


# -- the agent --------------------------------------------------------------------------------
@dataclass
class AgentStats:
    ticks: int = 0
    records: int = 0
    shipped: int = 0
    failures: list[str] = field(default_factory=list)


class Agent:
    def __init__(
        self,
        host: str,
        sampler: Any,
        resolver: OwnerResolver,
        spool: Spool,
        ship: Callable[[Path], None],
        interval_ms: int = 1000,
    ):
        self.host = host
        self.sampler = sampler
        self.resolver = resolver
        self.spool = spool
        self.ship = ship
        self.interval_ms = interval_ms
        self.prev_ts: dict[str, int] = {}
        self.stats = AgentStats()

    def record(self, s: GpuSample) -> dict[str, Any]:
        prev = self.prev_ts.get(s.uuid)
        dur = s.ts_ms - prev if prev is not None else self.interval_ms
        if dur <= 0 or dur > 5 * self.interval_ms:  # clock step or a gap: one interval
            dur = self.interval_ms
        self.prev_ts[s.uuid] = s.ts_ms
        owners = []
        for p in s.procs:
            o = self.resolver.owner(p.pid)
            owners.append({"pid": p.pid, "sm": p.sm, "mem": p.used_mem, **asdict(o)})
        return {
            "host": self.host,
            "ts_ms": s.ts_ms,
            "dur_ms": dur,
            "uuid": s.uuid,
            "name": s.name,
            "util": s.util,
            "mem_used": s.mem_used,
            "power_mw": s.power_mw,
            "energy_mj": s.energy_mj,
            "gpm": s.gpm,
            "procs": owners,
        }

    def run(self, ticks: int | None = None, *, sleep: bool = True) -> AgentStats:
        """Sample `ticks` times (forever if None), shipping closed segments as they close."""
        self.flush()
        stream = self.sampler.ticks()
        n = 0
        while ticks is None or n < ticks:
            began = time.monotonic()
            try:
                samples = next(stream)
            except StopIteration:
                break
            self.spool.append([self.record(s) for s in samples])
            self.stats.ticks += 1
            self.stats.records += len(samples)
            n += 1
            if not self.spool.current:
                self.flush()
            if sleep:
                time.sleep(max(0.0, self.interval_ms / 1000 - (time.monotonic() - began)))
        return self.stats

    def stop(self) -> None:
        self.spool.rotate()
        self.flush()

    def flush(self) -> None:
        for segment in self.spool.closed():
            try:
                self.ship(segment)
            except Exception as error:  # keep it for the next try; report it
                self.stats.failures.append(f"{segment.name}: {error}")
                return
            segment.unlink()
            self.stats.shipped += 1


# -- records -> facts -------------------------------------------------------------------------
def segment_facts(records: list[dict[str, Any]], source: str = "agent") -> SampleFacts:
    """GPU samples with holders from agent records. Each holder's time: an even share
    (`request`) or its share of the processes' SM use (`usage`); busy time from GPM SM
    utilisation where the GPU has it, else NVML utilisation; a holder's own SM use where
    NVML reports it per process."""
    usage = UsageRows()
    nodes: dict[str, dict[str, Any]] = {}
    pods: dict[str, dict[str, Any]] = {}
    energy = []
    for r in records:
        host, t, dur = r["host"], int(r["ts_ms"]), int(r["dur_ms"])
        n = nodes.setdefault(
            host, {"node_id": host, "gpus": {}, "signal": None, "source": source, "labels": {}}
        )
        n["gpus"][r["uuid"]] = r.get("name")
        gpm_sm = (r.get("gpm") or {}).get(SIGNAL_GPM)
        if _finite(gpm_sm):
            busy, n["signal"] = float(gpm_sm) / 100, SIGNAL_GPM
        elif _finite(r.get("util")):
            busy = float(r["util"]) / 100
            n["signal"] = n["signal"] or SIGNAL_UTIL
        else:
            busy = 0.0
        busy = min(max(busy, 0.0), 1.0)
        total = dur * MICRO
        owners: dict[str, dict[str, Any]] = {}
        for p in r.get("procs") or []:
            o = owners.setdefault(p["workload_id"], {**p, "sm_sum": 0.0, "sm_known": True})
            if _finite(p.get("sm")) and p["sm"] >= 0:
                o["sm_sum"] += float(p["sm"])
            else:
                o["sm_known"] = False
        if not owners:
            usage.add(t, host, r["uuid"], None, total, 0)
        else:
            ids = sorted(owners)
            k = len(ids)
            even = split_even(total, k)
            shares = split_by_use(
                total, [owners[w]["sm_sum"] if owners[w]["sm_known"] else None for w in ids]
            )
            for i, w in enumerate(ids):
                o = owners[w]
                mine = (
                    dur * o["sm_sum"] / 100 * MICRO if o["sm_known"] and k > 1 else total * busy / k
                )
                usage.add(t, host, r["uuid"], w, even[i], round(mine), held_use_u=shares[i])
                if w not in pods:
                    pods[w] = {
                        "workload_id": w,
                        "kind": o.get("kind") or "process",
                        "namespace": w.split("/", 1)[0] if o.get("kind") == "pod" else None,
                        "name": w.split("/", 1)[-1],
                        "node_id": host,
                        "start_ms": t,
                        "end_ms": t + dur,
                        "labels": dict(o.get("labels") or {}),
                        "source": source,
                    }
                pods[w]["start_ms"] = min(pods[w]["start_ms"], t)
                pods[w]["end_ms"] = max(pods[w]["end_ms"], t + dur)
        if r.get("energy_mj") is not None or r.get("power_mw") is not None:
            energy.append(
                {
                    "ts_ms": t,
                    "node_id": host,
                    "gpu_id": r["uuid"],
                    "energy_mj": r.get("energy_mj"),
                    "power_w": r["power_mw"] / 1000 if r.get("power_mw") is not None else None,
                    "fb_used_mib": r["mem_used"] / 2**20 if r.get("mem_used") is not None else None,
                    "source": source,
                }
            )
    node_rows = []
    for n in nodes.values():
        names = sorted({v for v in n["gpus"].values() if v})
        node_rows.append(
            {
                "node_id": n["node_id"],
                "gpu_model": names[0] if names else None,
                "gpu_count": len(n["gpus"]),
                "util_signal": n["signal"],
                "labels": {},
                "source": source,
            }
        )
    table = usage.table()
    ends = [int(r["ts_ms"]) + int(r["dur_ms"]) for r in records]
    return SampleFacts(
        table,
        node_rows,
        list(pods.values()),
        energy,
        min(usage.ts) if usage.ts else 0,
        max(ends) if ends else 0,
        last_ts_ms=max(usage.ts) if usage.ts else 0,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not (math.isnan(value) or math.isinf(value))
