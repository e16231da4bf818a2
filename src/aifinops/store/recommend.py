"""The facts the recommendation rules read, prepared in the engine: each GPU holder's use of
what it held, hour by hour, what it cost, and the few facts about it the rules ask (its
controller, its replicas, whether it serves).

The steps, each a set operation:
  1. One scan of `gpu_usage` in the window (rows with a holder), left-joined to the GPUs'
     memory readings (`gpu_energy.fb_used_mib`, one per GPU and instant) on node, GPU and
     sample time, grouped by workload and hour: held and busy GPU-ms (`held_req`, `used`;
     docs/decisions/0001), the most memory used on one of its GPUs, and whether it was
     busy on some GPU in some sample (busy: `used` above 1 % of what it held of the
     sample). The join is left out when the window has no memory readings.
  2. Workloads that may hold several GPUs at once (a request of more than one, or none
     known) are read again, per sample time: how many of their GPUs were busy (and held)
     at once; the most of those is the hour's peak. A request of one GPU (or one MIG
     instance or time-slice) is one device at a time: its peak is 1 if it was busy in some
     sample of the hour, else 0, from step 1.
  3. Pods are gathered into holdings: the pods of one controller (`namespace/name` of
     the controller: a Deployment's pods across restarts) are one holding, a pod without
     a controller is one by itself. Its node, controller, kind, labels and GPU resource
     are those of its pod that held the most GPU time (of equals, the one that started
     last in the window, then the last by name). Its replicas are the most of its pods
     that ran at once (a sweep over their intervals, clipped to the window). Its hours
     are the whole holding's: held and busy GPU-time summed over its pods (in exact
     GPU-ms), memory the most on one of its GPUs, and the peak counted over all its pods
     at each sample time (the samples of holdings of several pods are read again for it,
     as in step 2). Where every holding is one pod, its hours are its pod's as they are
     and its replicas 1: no second grouping and no sweep.
  4. Money, from the allocation by team, namespace, workload and node (store/allocate.py,
     given as its Arrow rows and read in place): each holding's cost is its pods' rows
     (GPU, CPU and RAM, in exact cost units), its team the one carrying the most of it;
     the rows no team carries (`__unallocated__`, buckets left out) are the window's
     unattributed spend.
The sample scan is the only large read; steps 2 and 3 read again only the samples of
workloads that may be on several GPUs, and of holdings of several pods. Step 4 reads the
allocation's rows, one per pod and node.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from aifinops.core.model import BUCKETS, UNALLOCATED
from aifinops.store.allocate import Temps, step_start
from aifinops.store.db import Store

HOUR_MS = 3_600_000
BUSY_SHARE = 100  # busy means used > held / BUSY_SHARE in a sample: above 1 %
_VIEWS = itertools.count(1)


@dataclass(frozen=True)
class HoldingTables:
    """hours: holding, start_ms, held_gpus, busy_gpus, peak_gpus, memory_mib (all its pods
    together, ordered by holding and hour); holdings: holding, namespace, node_id,
    controller, kind, labels, gpu_request, gpu_resource, gpus_seen, pods, replicas,
    serving, held_ms, cost_units (its pods' GPU, CPU and RAM cost in cost units, null where
    the allocation has none), team (the team carrying the most of that; null where none),
    ordered by holding; unallocated: namespace, workload, node, cost_units (the
    allocation's rows no team carries, above zero, the largest first)."""

    hours: pa.Table
    holdings: pa.Table
    unallocated: pa.Table


def holding_hours(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """One row per workload and hour of [start, end) in which it held GPUs: workload_id,
    start_ms (the hour, counted from `start_ms`), held_gpus and busy_gpus (GPU-hours in the
    hour), peak_gpus (the most of its GPUs busy at one sample time), gpus_seen (the most
    GPUs it held at one sample time), memory_mib (the most framebuffer used on one of its
    GPUs; null without readings)."""
    with Temps(store) as temps:
        pods = _pod_hours(store, temps, start_ms, end_ms).drop("held_ms", "used_ms")
        return store.arrow(pods.order_by(["workload_id", "start_ms"]))


def holdings(store: Store, start_ms: int, end_ms: int, allocation: pa.Table) -> HoldingTables:
    """The GPU holdings of [start, end), their hourly use and their cost (steps 1-4).
    `allocation`: the allocation's rows of the same window by team, namespace, workload
    and node, idle kept apart (`AllocationResult.rows`)."""
    s, e = start_ms, end_ms
    with Temps(store) as temps, _registered(store, "rec_allocation", allocation) as alloc:
        pod_hours = _pod_hours(store, temps, s, e)
        pod = temps.create("rec_pods", _pods(store, pod_hours, s, e))
        # the pods of holdings of several pods (m_id), under their holding (m_key)
        several = pod.group_by(k="holding").aggregate(n=pod.count())
        several = several.filter(several.n > 1)
        members = pod.join(several, pod.holding == several.k)
        members = temps.create(
            "rec_members", members.select(m_id=members.workload_id, m_key=members.holding)
        )
        multi = members if store.arrow(members.limit(1)).num_rows else None
        facts = _holding_facts(pod, multi)
        money = _money(alloc, pod)
        facts = facts.left_join(money, facts.holding == money.m_holding).drop("m_holding")
        hours = _holding_hours(store, pod_hours, pod, multi, s, e)
        return HoldingTables(
            hours=store.arrow(hours.order_by(["holding", "start_ms"])),
            holdings=store.arrow(facts.order_by("holding")),
            unallocated=store.arrow(_unallocated(alloc)),
        )


def workload_labels(store: Store, workload_ids: list[str]) -> dict[str, dict[str, str]]:
    """The labels of these workloads (those the store knows)."""
    if not workload_ids:
        return {}
    rows = store.raw(
        "SELECT workload_id, labels FROM workloads "
        "WHERE workload_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
        [workload_ids],
    )
    return {r[0]: dict(r[1] or {}) for r in rows}


def _usage(store: Store, s: int, e: int) -> ir.Table:
    """The samples of [s, e) that have a holder, with their hour and whether they were
    busy (`used` above 1 % of what the holder held of the sample)."""
    u = store.table("gpu_usage")
    u = u.filter((u.ts_ms >= s) & (u.ts_ms < e) & u.workload_id.notnull())
    return u.mutate(hour=step_start(u.ts_ms, s, HOUR_MS), busy=u.used * BUSY_SHARE > u.held_req)


def _peaks(u: ir.Table, members: ir.Table) -> ir.Table:
    """Per key and hour, the most GPUs busy (`peak`) and held (`seen`) at one sample time
    by the workloads in `members` (m_id: workload, m_key: what they are counted under)."""
    m = u.join(members, u.workload_id == members.m_id)
    at = m.group_by([m.m_key, m.hour, m.ts_ms]).aggregate(
        busy_n=m.busy.ifelse(1, 0).sum(), held_n=m.count()
    )
    return at.group_by(p_key=at.m_key, p_hour=at.hour).aggregate(
        peak=at.busy_n.max(), seen=at.held_n.max()
    )


def _pod_hours(store: Store, temps: Temps, s: int, e: int) -> ir.Table:
    """Steps 1 and 2: per workload and hour (over temporary tables)."""
    u = _usage(store, s, e)
    en = store.table("gpu_energy")
    en = en.filter((en.ts_ms >= s) & (en.ts_ms < e) & en.fb_used_mib.notnull())
    if store.arrow(en.select("ts_ms").limit(1)).num_rows:
        # one reading per GPU and instant (two sources may both have read it): the join
        # must not repeat a sample
        en = en.group_by(e_ts="ts_ms", e_node="node_id", e_gpu="gpu_id").aggregate(
            fb=en.fb_used_mib.max()
        )
        j = u.left_join(en, [u.ts_ms == en.e_ts, u.node_id == en.e_node, u.gpu_id == en.e_gpu])
        grouped = _hour_sums(j, memory_mib=j.fb.max())
    else:  # no readings: no join, and no column of nulls carried through the scan
        grouped = _hour_sums(u).mutate(memory_mib=ibis.null("float64"))
    first = temps.create("rec_hours", grouped)
    # 2. workloads that may hold several GPUs at once (a request of more than one, or none
    #    known). A request of one GPU (or one MIG instance, or one time-slice) is one
    #    device at a time.
    w = store.table("workloads")
    one = w.filter(w.gpu_request.notnull() & (w.gpu_request <= 1)).select(one_id=w.workload_id)
    ids = first.select(m_id=first.workload_id).distinct()
    ids = ids.anti_join(one, ids.m_id == one.one_id)
    if store.arrow(ids.limit(1)).num_rows:
        ids = temps.create("rec_multi", ids.mutate(m_key=ids.m_id))
        peaks = temps.create("rec_peaks", _peaks(u, ids))
        f = first.left_join(peaks, [first.workload_id == peaks.p_key, first.hour == peaks.p_hour])
    else:
        f = first.mutate(peak=ibis.null("int64"), seen=ibis.null("int64"))
    # a projection of what is stored (not stored again): it is read twice, cheaply
    return f.select(
        workload_id=f.workload_id,
        start_ms=f.hour,
        held_ms=f.held_ms,
        used_ms=f.used_ms,
        held_gpus=_gpus(f.held_ms),
        busy_gpus=_gpus(f.used_ms),
        peak_gpus=f.peak.fill_null(f.any_busy.ifelse(1, 0)).cast("int64"),
        gpus_seen=f.seen.fill_null(1).cast("int64"),
        memory_mib=f.memory_mib,
    )


def _gpus(ms: ir.NumericValue) -> ir.FloatingValue:
    """GPU-ms in an hour as GPUs held (or busy) on average over it."""
    return ms.cast("float64") / HOUR_MS


def _hour_sums(u: ir.Table, **more: ir.Value) -> ir.Table:
    """Per workload and hour: GPU-ms held and busy, whether it was busy at all, and
    `more`."""
    return u.group_by(["workload_id", "hour"]).aggregate(
        held_ms=u.held_req.sum(), used_ms=u.used.sum(), any_busy=u.busy.any(), **more
    )


def _replicas(pod: ir.Table) -> ir.Table:
    """The most pods of each holding that ran at once in the window: +1 at each pod's
    start, -1 at its end (an end before a start at the same instant), the running sum's
    maximum (at least 1)."""
    starts = pod.select("holding", t=pod.p_start, d=ibis.literal(1))
    ends = pod.select("holding", t=pod.p_end, d=ibis.literal(-1))
    ev = ibis.union(starts, ends)
    run = ev.mutate(
        n=ev.d.sum().over(ibis.cumulative_window(group_by=ev.holding, order_by=[ev.t, ev.d]))
    )
    out = run.group_by(r_holding=run.holding).aggregate(replicas=run.n.max())
    return out.mutate(replicas=ibis.greatest(out.replicas, 1).cast("int64"))


def _pods(store: Store, pod_hours: ir.Table, s: int, e: int) -> ir.Table:
    """Step 3: each pod that held GPUs, with its holding (`namespace/name` of its
    controller, else itself), its GPU-ms held, the most GPUs it held at once, what the
    store knows of it, its run clipped to the window, and whether it serves."""
    per_pod = pod_hours.group_by("workload_id").aggregate(
        held_ms=pod_hours.held_ms.sum(), pod_seen=pod_hours.gpus_seen.max()
    )
    w = store.table("workloads")
    ctrl = w.controller.re_extract(r"^[^/]*/(.+)$", 1).nullif("")
    holder = (w.namespace.notnull() & ctrl.notnull()).ifelse(
        w.namespace.concat("/", ctrl), w.workload_id
    )
    w = w.select(
        wl_id=w.workload_id,
        holding=holder,
        namespace=w.namespace,
        node_id=w.node_id,
        controller=w.controller,
        kind=w.kind,
        labels=w.labels,
        gpu_request=w.gpu_request,
        gpu_resource=w.gpu_resource,
        p_start=ibis.greatest(w.start_ms.fill_null(s), ibis.literal(s)),
        p_end=ibis.least(w.end_ms.fill_null(e), ibis.literal(e)),
    )
    j = per_pod.left_join(w, per_pod.workload_id == w.wl_id)
    c = store.table("serving_counters")
    c = c.filter((c.ts_ms >= s) & (c.ts_ms < e) & c.workload_id.notnull())
    serving = c.select(sv_id=c.workload_id).distinct()
    j = j.left_join(serving, j.workload_id == serving.sv_id)
    return j.select(
        "workload_id",
        "held_ms",
        "pod_seen",
        holding=j.holding.fill_null(j.workload_id),
        namespace=j.namespace,
        node_id=j.node_id,
        controller=j.controller,
        kind=j.kind,
        labels=j.labels,
        gpu_request=j.gpu_request,
        gpu_resource=j.gpu_resource,
        p_start=j.p_start.fill_null(s),
        p_end=j.p_end.fill_null(e),
        serving=j.sv_id.notnull(),
    )


def _holding_facts(pod: ir.Table, members: ir.Table | None) -> ir.Table:
    """Step 3: per holding, what its pod that held the most GPU time says (node,
    controller, kind, labels, GPU resource), the largest request, the most GPUs one pod
    held at once, its pods, its replicas (1 for a holding of one pod), whether some pod
    serves, and its GPU-ms held."""
    per = pod.group_by("holding").aggregate(
        # the pod that held the most; of equals, the one that started last (then by name)
        main=pod.workload_id.first(
            order_by=[pod.held_ms.desc(), pod.p_start.desc(), pod.workload_id.desc()]
        ),
        gpu_request=pod.gpu_request.max(),
        gpus_seen=pod.pod_seen.max(),
        pods=pod.count(),
        serving=pod.serving.any(),
        held_ms=pod.held_ms.sum(),
    )
    main = pod.select(
        "namespace", "node_id", "controller", "kind", "labels", "gpu_resource",
        m_id=pod.workload_id,
    )  # fmt: skip
    f = per.join(main, per.main == main.m_id)
    if members is None:
        return f.select(
            "holding", "namespace", "node_id", "controller", "kind", "labels", "gpu_request",
            "gpu_resource", "gpus_seen", "pods", "serving", "held_ms",
            replicas=ibis.literal(1, type="int64"),
        )  # fmt: skip
    reps = _replicas(pod.semi_join(members, pod.workload_id == members.m_id))
    f = f.left_join(reps, f.holding == reps.r_holding)
    return f.select(
        "holding", "namespace", "node_id", "controller", "kind", "labels", "gpu_request",
        "gpu_resource", "gpus_seen", "pods", "serving", "held_ms",
        replicas=f.replicas.fill_null(1),
    )  # fmt: skip


def _holding_hours(
    store: Store, pod_hours: ir.Table, pod: ir.Table, members: ir.Table | None, s: int, e: int
) -> ir.Table:
    """Step 3: per holding and hour, held and busy GPUs, the peak and the most memory. A
    holding of several pods: its pods' GPU-ms summed (exact, so that no order of adding
    floats shows in the facts), the most memory of any, the peak counted over all of them
    per sample time; a holding of one pod: that pod's hours."""
    of = pod.select(p_id=pod.workload_id, holding=pod.holding)
    h = pod_hours.join(of, pod_hours.workload_id == of.p_id)
    if members is None:
        return h.select("holding", "start_ms", "held_gpus", "busy_gpus", "peak_gpus", "memory_mib")
    hours = h.group_by(["holding", "start_ms"]).aggregate(
        held_ms=h.held_ms.sum(),
        used_ms=h.used_ms.sum(),
        pod_peak=h.peak_gpus.max(),
        memory_mib=h.memory_mib.max(),
    )
    peaks = _peaks(_usage(store, s, e), members)
    hours = hours.left_join(peaks, [hours.holding == peaks.p_key, hours.start_ms == peaks.p_hour])
    return hours.select(
        "holding",
        "start_ms",
        held_gpus=_gpus(hours.held_ms),
        busy_gpus=_gpus(hours.used_ms),
        peak_gpus=hours.peak.fill_null(hours.pod_peak).cast("int64"),
        memory_mib=hours.memory_mib,
    )


def _cost_units(a: ir.Table) -> ir.NumericValue:
    """An allocation row's cost (GPU, CPU and RAM; idle kept apart) in cost units."""
    return a.gpu_units + a.cpu_units + a.ram_units


def _money(alloc: ir.Table, pod: ir.Table) -> ir.Table:
    """Step 4: per holding (m_holding), its pods' cost in the allocation (cost_units) and
    the team carrying the most of it (a tie goes to the last team by name). A bucket's row
    has the bucket in every dimension, its workload too; a row with no GPU time and no
    cost names no team."""
    a = alloc.filter(alloc.workload.notin(list(BUCKETS)))
    a = a.mutate(cost_units=_cost_units(a))
    a = a.filter((a.gpu_ms != 0) | (a.cost_units != 0) | (a.idle_units != 0))
    of = pod.select(t_id=pod.workload_id, t_holding=pod.holding)
    a = a.join(of, a.workload == of.t_id)
    teams = a.group_by(m_holding=a.t_holding, team=a.team).aggregate(cost_units=a.cost_units.sum())
    return teams.group_by("m_holding").aggregate(
        cost_units=teams.cost_units.sum(),
        team=teams.team.first(order_by=[teams.cost_units.desc(), teams.team.desc()]),
    )


def _unallocated(alloc: ir.Table) -> ir.Table:
    """Step 4: the allocation's rows no team carries, buckets left out, above zero: the
    largest first (then by namespace, workload and node, as the cost report orders them)."""
    a = alloc.filter((alloc.team == UNALLOCATED) & alloc.workload.notin(list(BUCKETS)))
    a = a.select("namespace", "workload", "node", cost_units=_cost_units(a))
    a = a.filter(a.cost_units > 0)
    return a.order_by([a.cost_units.desc(), "namespace", "workload", "node"])


@contextmanager
def _registered(store: Store, prefix: str, data: pa.Table) -> Iterator[ir.Table]:
    """An Arrow table read by the engine, as a table expression, while the block runs (on
    DuckDB a temporary view, not a copy)."""
    with store.attached(f"_{prefix}_{next(_VIEWS)}", data) as name:
        yield store.con.table(name)
