"""Give each GPU sample its holders, once, at ingest (DESIGN §4: allocation is a scan).

For every device sample of an nvidia-smi log:
  1. its duration is the time to the next sample of that GPU (a gap of more than three
     median intervals is missing data: the sample gets one median interval); the first
     sample of each minute starts at the minute when it follows on from the one before
     (`_snap_to_minutes`), so no sample crosses into the next minute's step;
  2. its holders are the processes of the process snapshot (compute-apps, or pmon when
     there is no compute-apps log) matched to it: each snapshot to its nearest device
     sample within three quarters of an interval, at most one snapshot per sample;
  3. request shares split the sample evenly among its holders; usage shares split it by
     each holder's pmon SM % at that time (a pid pmon lists with `-` is 0 %; evenly when
     pmon has no line for some holder, or every holder is 0 or `-`), both by
     `core.shares`; a sample with no holder becomes one idle row;
  4. busy time: a sole holder gets duration x device utilisation; several holders get
     duration x their own SM % (or an even part of the device's busy time); idle rows keep
     the device's busy time;
  5. each pid maps to its owner (host, time range), or to an unowned `host/pid-N` workload;
  6. the sample's device readings (memory.used, power.draw; dmon's fb and pwr) become one
     `gpu_energy` row at the time its usage rows carry, where either was read.
Shares are integer micro-milliseconds whose rows sum exactly to the sample's duration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aifinops.core.shares import split_by_use, split_even
from aifinops.sources.facts import MICRO, usage_table
from aifinops.sources.inventory.owners import Owner
from aifinops.sources.telemetry.nvidia_smi import ParsedLog

SIGNALS = {"query-gpu": "utilization.gpu (nvidia-smi)", "dmon": "dmon sm (nvidia-smi)"}


@dataclass
class HeldUsage:
    usage: pa.Table
    workloads: list[dict[str, Any]]
    gpus: dict[str, str | None]  # uuid -> model name
    start_ms: int
    end_ms: int
    unowned_pids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    energy: list[dict[str, Any]] = field(default_factory=list)  # tables.GPU_ENERGY rows


def assign_holders(log: ParsedLog, host: str, owners: Sequence[Owner] = ()) -> HeldUsage:
    dev_ts = np.array([d.ts_ms for d in log.devices], dtype=np.int64)
    dev_gpu = np.array([d.gpu_uuid for d in log.devices], dtype=object)
    dev_util = np.array([np.nan if d.util is None else d.util for d in log.devices])
    dev_mem = np.array([_nan(d.memory_used_mib) for d in log.devices])
    dev_power = np.array([_nan(d.power_w) for d in log.devices])
    notes: list[str] = []
    if np.isnan(dev_util).any():
        notes.append(
            f"{int(np.isnan(dev_util).sum())} GPU samples had no utilisation; "
            "counted as held but not busy"
        )
    dev_util = np.nan_to_num(dev_util, nan=0.0)
    gpus: dict[str, str | None] = {}
    for d in log.devices:
        if d.gpu_uuid and (d.gpu_uuid not in gpus or gpus[d.gpu_uuid] is None):
            gpus[d.gpu_uuid] = d.name

    parts: list[dict[str, np.ndarray[Any, Any]]] = []
    energy: list[dict[str, Any]] = []
    for gpu in sorted({str(g) for g in dev_gpu}):
        mask = dev_gpu == gpu
        order = np.argsort(dev_ts[mask], kind="stable")
        ts, util = dev_ts[mask][order], dev_util[mask][order]
        ts, keep = np.unique(ts, return_index=True)  # duplicate timestamps count once
        util = util[keep]
        rows, sample_ts = _one_gpu(gpu, ts, util, log, notes)
        parts.append(rows)
        mem, power = dev_mem[mask][order][keep], dev_power[mask][order][keep]
        energy += _readings(host, gpu, sample_ts, mem, power)

    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    pids = cat["pid"]
    workload = np.full(len(pids), None, dtype=object)
    for owner in owners:
        if owner.host and owner.host != host:
            continue
        m = pids == owner.pid
        if owner.start_ms is not None:
            m &= cat["ts"] >= owner.start_ms
        if owner.end_ms is not None:
            m &= cat["ts"] < owner.end_ms
        workload[m & (workload == None)] = owner.workload  # noqa: E711 - numpy mask
    unowned = sorted({int(p) for p in pids[(pids >= 0) & (workload == None)]})  # noqa: E711
    for pid in unowned:
        workload[(pids == pid) & (workload == None)] = f"{host}/pid-{pid}"  # noqa: E711

    usage = usage_table(
        cat["ts"],
        [host] * len(pids),
        cat["gpu"].tolist(),
        workload.tolist(),
        cat["held_req"],
        cat["held_use"],
        cat["used"],
    )
    workloads = _workload_rows(host, owners, workload, cat)
    end = cat["ts"] + cat["dur"]
    if unowned:
        notes.append(
            f"{len(unowned)} process(es) had no owner and are unallocated: "
            + ", ".join(str(p) for p in unowned[:10])
        )
    return HeldUsage(
        usage, workloads, gpus, int(cat["ts"].min()), int(end.max()), unowned, notes, energy
    )


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def _readings(
    host: str,
    gpu: str,
    ts: np.ndarray[Any, Any],
    mem: np.ndarray[Any, Any],
    power: np.ndarray[Any, Any],
) -> list[dict[str, Any]]:
    """Step 6: one reading per sample that read memory or power (NULL where nvidia-smi
    printed [N/A]). It is stored at the sample's row time, not the logged one, because
    the memory a holder used is read by joining readings to its samples on their time
    (store/recommend.py); the two differ only for a minute's first sample, by < 1 s."""
    read = ~(np.isnan(mem) & np.isnan(power))
    return [
        {"ts_ms": t, "node_id": host, "gpu_id": gpu, "energy_mj": None,
         "power_w": None if math.isnan(p) else p, "fb_used_mib": None if math.isnan(m) else m,
         "source": "nvidia-smi"}
        for t, m, p in zip(ts[read].tolist(), mem[read].tolist(), power[read].tolist(),
                           strict=True)
    ]  # fmt: skip


def _durations(ts: np.ndarray[Any, Any], gpu: str, notes: list[str]) -> np.ndarray[Any, Any]:
    if len(ts) == 1:
        notes.append(f"{gpu}: a single sample; assumed a 1 s interval")
        return np.array([1000], dtype=np.int64)
    gaps = np.diff(ts)
    median = int(np.median(gaps))
    dur = np.append(gaps, median)
    long = dur > 3 * median
    if long.any():
        notes.append(
            f"{gpu}: {int(long.sum())} gap(s) longer than {3 * median} ms treated as missing data"
        )
    dur[long] = median
    return dur.astype(np.int64)


def _snap_to_minutes(
    ts: np.ndarray[Any, Any], dur: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Each minute's first sample, when it follows on from the sample before, starts at
    the minute: the sample before ends there, so no sample crosses a minute boundary.

    `nvidia-smi -l 1` drifts (a sample every ~1.002 s on the H100 capture), so the sample
    that starts last in a minute runs on into the next one; counted whole in the step it
    starts in, it gave a 1-minute step 60.13 GPU-seconds per GPU (issue 12, item 5). Moving
    the boundary between the two samples to the minute keeps one row per sample, every
    sample's time contiguous, and the sum of the durations; each step of a whole number of
    minutes then holds exactly its length. A sample before a gap (missing data) is left
    alone: the next one does not reach back over the gap."""
    out_ts, out_dur = ts.copy(), dur.copy()
    if len(ts) < 2:
        return out_ts, out_dur
    minute = 60_000
    nxt = ts[1:]
    boundary = (nxt // minute) * minute
    snap = np.flatnonzero((ts[:-1] + dur[:-1] == nxt) & (boundary > ts[:-1]) & (boundary < nxt))
    out_ts[snap + 1] = boundary[snap]
    out_dur[snap] = boundary[snap] - ts[snap]
    out_dur[snap + 1] = dur[snap + 1] + (nxt[snap] - boundary[snap])
    return out_ts, out_dur


def _one_gpu(
    gpu: str, ts: np.ndarray[Any, Any], util: np.ndarray[Any, Any], log: ParsedLog, notes: list[str]
) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """Steps 1-4 for one GPU: its usage rows, and the time each sample's rows carry."""
    dur = _durations(ts, gpu, notes)
    median = int(np.median(dur))
    # matching below uses the logged times; the rows carry the times snapped to minutes
    row_ts, dur = _snap_to_minutes(ts, dur)
    procs = [p for p in log.processes if p.gpu_uuid == gpu]
    snap_ts = np.array(sorted({p.ts_ms for p in procs}), dtype=np.int64)
    members: dict[int, list[int]] = {}
    for p in procs:
        members.setdefault(p.ts_ms, [])
        if p.pid not in members[p.ts_ms]:
            members[p.ts_ms].append(p.pid)

    # each snapshot goes to its nearest device sample (within 3/4 of an interval); a device
    # sample claimed by several snapshots keeps the nearest, so no snapshot counts twice
    holders_per_sample = np.zeros(len(ts), dtype=np.int64)
    snap_of_sample = np.full(len(ts), -1, dtype=np.int64)
    if len(snap_ts):
        right = np.clip(np.searchsorted(ts, snap_ts), 0, len(ts) - 1)
        left = np.clip(right - 1, 0, len(ts) - 1)
        pick = np.where(np.abs(ts[left] - snap_ts) <= np.abs(ts[right] - snap_ts), left, right)
        dist = np.abs(ts[pick] - snap_ts)
        ok = np.flatnonzero(dist <= 0.75 * median)
        order = ok[np.lexsort((dist[ok], pick[ok]))]
        first = order[np.r_[True, pick[order][1:] != pick[order][:-1]]] if len(order) else order
        snap_of_sample[pick[first]] = first
        counts = np.array([len(members[int(t)]) for t in snap_ts], dtype=np.int64)
        held_mask = snap_of_sample >= 0
        holders_per_sample[held_mask] = counts[snap_of_sample[held_mask]]

    reps = np.maximum(holders_per_sample, 1)
    row_sample = np.repeat(np.arange(len(ts)), reps)
    first_row = np.cumsum(reps) - reps
    rank = np.arange(len(row_sample)) - first_row[row_sample]
    n = holders_per_sample[row_sample]
    pid = np.full(len(row_sample), -1, dtype=np.int64)
    if len(snap_ts):
        flat = [members[int(t)] for t in snap_ts]
        offsets = np.cumsum([0] + [len(m) for m in flat])
        flat_pids = np.array([p for m in flat for p in m] or [0], dtype=np.int64)
        held = n > 0
        pid[held] = flat_pids[offsets[snap_of_sample[row_sample[held]]] + rank[held]]

    sm = _pmon_sm(gpu, ts[row_sample], pid, log, median)
    known = ~np.isnan(sm)
    # a sole holder (or an idle row) keeps its sample whole; a shared sample is split
    # by the one rule in core.shares: evenly for requests, by pmon SM % for usage
    held_req = dur[row_sample] * MICRO
    held_use = held_req.copy()
    for sample in np.flatnonzero(holders_per_sample > 1):
        a, k = int(first_row[sample]), int(holders_per_sample[sample])
        total = int(dur[sample]) * MICRO
        held_req[a : a + k] = split_even(total, k)
        held_use[a : a + k] = split_by_use(
            total, [float(x) if x >= 0 else None for x in sm[a : a + k]]
        )

    dev_busy = dur[row_sample] * util[row_sample] * MICRO
    used = np.where(
        n <= 1,
        dev_busy,
        np.where(
            known, dur[row_sample] * np.nan_to_num(sm) / 100.0 * MICRO, dev_busy / np.maximum(n, 1)
        ),
    )
    rows = {
        "ts": row_ts[row_sample],
        "dur": dur[row_sample],
        "gpu": np.full(len(row_sample), gpu, dtype=object),
        "pid": pid,
        "held_req": held_req.astype(np.int64),
        "held_use": held_use.astype(np.int64),
        "used": np.round(used).astype(np.int64),
    }
    return rows, row_ts


def _pmon_sm(
    gpu: str, ts: np.ndarray[Any, Any], pid: np.ndarray[Any, Any], log: ParsedLog, median: int
) -> np.ndarray[Any, Any]:
    """Each row's pmon SM % at its time (nearest pmon line of that pid within ~1 s); NaN
    where pmon has no line for that pid then (not measured).

    A pid that pmon lists with `-` in its `sm` column had no SM activity sampled in that
    interval: it counts as 0 %, not as unknown, so it takes no usage share from a busy
    neighbour (issue 12, item 2)."""
    out = np.full(len(ts), np.nan)
    rows = [p for p in log.pmon if p.gpu_uuid == gpu]
    for this_pid in {p.pid for p in rows}:
        mine = sorted((p.ts_ms, 0.0 if p.sm is None else p.sm) for p in rows if p.pid == this_pid)
        pts = np.array([t for t, _ in mine], dtype=np.int64)
        psm = np.array([s for _, s in mine], dtype=float)
        m = pid == this_pid
        if not m.any():
            continue
        # pmon prints whole seconds: compare against the second the sample falls in
        at = (ts[m] // 1000) * 1000
        right = np.clip(np.searchsorted(pts, at), 0, len(pts) - 1)
        left = np.clip(right - 1, 0, len(pts) - 1)
        pick = np.where(np.abs(pts[left] - at) <= np.abs(pts[right] - at), left, right)
        ok = np.abs(pts[pick] - at) <= max(1000, median)
        out[np.flatnonzero(m)[ok]] = psm[pick[ok]]
    return out


def _workload_rows(
    host: str,
    owners: Sequence[Owner],
    workload: np.ndarray[Any, Any],
    cat: dict[str, np.ndarray[Any, Any]],
) -> list[dict[str, Any]]:
    by_name: dict[str, Owner] = {}
    for owner in owners:
        if owner.host in (None, host):
            by_name.setdefault(owner.workload, owner)
    out = []
    for name in sorted({w for w in workload if w is not None}):
        m = workload == name
        start = int(cat["ts"][m].min())
        end = int((cat["ts"][m] + cat["dur"][m]).max())
        owner = by_name.get(name)
        out.append(
            {
                "workload_id": name,
                "kind": "process",
                "namespace": owner.namespace if owner else None,
                "name": name.split("/", 1)[-1],
                "node_id": host,
                "start_ms": start,
                "end_ms": end,
                "labels": dict(owner.labels) if owner else {},
                "source": "nvidia-smi",
            }
        )
    return out
