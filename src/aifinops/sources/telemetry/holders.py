"""Give each GPU sample its holders, once, at ingest (DESIGN §4: allocation is a scan).

For every device sample of an nvidia-smi log:
  1. its duration is the time to the next sample of that GPU (a gap of more than three
     median intervals is missing data: the sample gets one median interval);
  2. its holders are the processes of the process snapshot (compute-apps, or pmon when
     there is no compute-apps log) matched to it: each snapshot to its nearest device
     sample within three quarters of an interval, at most one snapshot per sample;
  3. request shares split the sample evenly among its holders; usage shares split it by
     each holder's pmon SM % at that time (evenly when any holder's SM % is unknown or all
     are zero), both by `core.shares`; a sample with no holder becomes one idle row;
  4. busy time: a sole holder gets duration x device utilisation; several holders get
     duration x their own SM % (or an even part of the device's busy time); idle rows keep
     the device's busy time;
  5. each pid maps to its owner (host, time range), or to an unowned `host/pid-N` workload.
Shares are integer micro-milliseconds whose rows sum exactly to the sample's duration.
"""

from __future__ import annotations

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


def assign_holders(log: ParsedLog, host: str, owners: Sequence[Owner] = ()) -> HeldUsage:
    dev_ts = np.array([d.ts_ms for d in log.devices], dtype=np.int64)
    dev_gpu = np.array([d.gpu_uuid for d in log.devices], dtype=object)
    dev_util = np.array([np.nan if d.util is None else d.util for d in log.devices])
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
    for gpu in sorted({str(g) for g in dev_gpu}):
        mask = dev_gpu == gpu
        order = np.argsort(dev_ts[mask], kind="stable")
        ts, util = dev_ts[mask][order], dev_util[mask][order]
        ts, keep = np.unique(ts, return_index=True)  # duplicate timestamps count once
        util = util[keep]
        parts.append(_one_gpu(gpu, ts, util, log, notes))

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
    return HeldUsage(usage, workloads, gpus, int(cat["ts"].min()), int(end.max()), unowned, notes)


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


def _one_gpu(
    gpu: str, ts: np.ndarray[Any, Any], util: np.ndarray[Any, Any], log: ParsedLog, notes: list[str]
) -> dict[str, np.ndarray[Any, Any]]:
    dur = _durations(ts, gpu, notes)
    median = int(np.median(dur))
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
    return {
        "ts": ts[row_sample],
        "dur": dur[row_sample],
        "gpu": np.full(len(row_sample), gpu, dtype=object),
        "pid": pid,
        "held_req": held_req.astype(np.int64),
        "held_use": held_use.astype(np.int64),
        "used": np.round(used).astype(np.int64),
    }


def _pmon_sm(
    gpu: str, ts: np.ndarray[Any, Any], pid: np.ndarray[Any, Any], log: ParsedLog, median: int
) -> np.ndarray[Any, Any]:
    """Each row's pmon SM % at its time (nearest pmon line of that pid within ~1 s)."""
    out = np.full(len(ts), np.nan)
    rows = [p for p in log.pmon if p.gpu_uuid == gpu]
    for this_pid in {p.pid for p in rows}:
        mine = sorted((p.ts_ms, p.sm) for p in rows if p.pid == this_pid)
        pts = np.array([t for t, _ in mine], dtype=np.int64)
        psm = np.array([np.nan if s is None else s for _, s in mine])
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
