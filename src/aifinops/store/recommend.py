"""The facts the recommendation rules read, prepared in the engine: each GPU holder's use of
what it held, hour by hour, and the few facts about it the rules ask (its controller, its
replicas, whether it serves).

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
     a controller is one by itself. Its replicas are the most of its pods that ran at
     once (a sweep over their intervals, clipped to the window). Its hours are the whole
     holding's: held and busy GPU-time summed over its pods, memory the most on one of
     its GPUs, and the peak counted over all its pods at each sample time (the samples
     of holdings of several pods are read again for it, as in step 2).
The sample scan is the only large read; steps 2 and 3 read again only the samples of
workloads that may be on several GPUs, and of holdings of several pods.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from aifinops.store.allocate import Temps, step_start
from aifinops.store.db import Store

HOUR_MS = 3_600_000
BUSY_SHARE = 100  # busy means used > held / BUSY_SHARE in a sample: above 1 %


@dataclass(frozen=True)
class HoldingTables:
    """hours: holding, start_ms, held_gpus, busy_gpus, peak_gpus, gpus_seen, memory_mib
    (all its pods together, ordered by holding and hour); holdings: holding, namespace, node_id,
    controller, kind, labels, gpu_request, gpu_resource, gpus_seen, pods, replicas,
    serving, held_ms (ordered by holding); pods: workload_id, holding."""

    hours: pa.Table
    holdings: pa.Table
    pods: pa.Table


def holding_hours(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """One row per workload and hour of [start, end) in which it held GPUs: workload_id,
    start_ms (the hour, counted from `start_ms`), held_gpus and busy_gpus (GPU-hours in the
    hour), peak_gpus (the most of its GPUs busy at one sample time), gpus_seen (the most
    GPUs it held at one sample time), memory_mib (the most framebuffer used on one of its
    GPUs; null without readings)."""
    with Temps(store) as temps:
        pods = _pod_hours(store, temps, start_ms, end_ms)
        return store.arrow(pods.order_by(["workload_id", "start_ms"]))


def holdings(store: Store, start_ms: int, end_ms: int) -> HoldingTables:
    """The GPU holdings of [start, end) and their hourly use (steps 1-3)."""
    s, e = start_ms, end_ms
    with Temps(store) as temps:
        pods = _pod_hours(store, temps, s, e)
        per_pod = pods.group_by("workload_id").aggregate(
            held_ms=(pods.held_gpus * HOUR_MS).sum(), pod_seen=pods.gpus_seen.max()
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
        pod = temps.create(
            "rec_pods",
            j.select(
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
            ),
        )
        reps = temps.create("rec_replicas", _replicas(pod))
        facts = pod.group_by("holding").aggregate(
            namespace=pod.namespace.arbitrary(),
            node_id=pod.node_id.argmax(pod.held_ms),
            controller=pod.controller.argmax(pod.held_ms),
            kind=pod.kind.argmax(pod.held_ms),
            labels=pod.labels.argmax(pod.held_ms),
            gpu_request=pod.gpu_request.max(),
            gpu_resource=pod.gpu_resource.argmax(pod.held_ms),
            gpus_seen=pod.pod_seen.max(),
            pods=pod.count(),
            serving=pod.serving.any(),
            held_ms=pod.held_ms.sum(),
        )
        facts = facts.join(reps, facts.holding == reps.r_holding).drop("r_holding")

        h = pods.join(pod.select("workload_id", "holding"), "workload_id")
        hours = h.group_by(["holding", "start_ms"]).aggregate(
            held_gpus=h.held_gpus.sum(),
            busy_gpus=h.busy_gpus.sum(),
            pod_peak=h.peak_gpus.max(),
            pod_seen=h.gpus_seen.max(),
            memory_mib=h.memory_mib.max(),
        )
        # holdings of several pods: GPUs busy at once over all of them, per sample time
        several = pod.group_by(k="holding").aggregate(n=pod.count())
        several = several.filter(several.n > 1)
        members = pod.join(several, pod.holding == several.k)
        members = members.select(m_id=members.workload_id, m_key=members.holding)
        if store.arrow(members.limit(1)).num_rows:
            peaks = _peaks(_usage(store, s, e), temps.create("rec_members", members))
            hours = hours.left_join(
                peaks, [hours.holding == peaks.p_key, hours.start_ms == peaks.p_hour]
            )
            peak, seen = hours.peak.fill_null(hours.pod_peak), hours.seen.fill_null(hours.pod_seen)
        else:
            peak, seen = hours.pod_peak, hours.pod_seen
        hours = hours.select(
            "holding",
            "start_ms",
            "held_gpus",
            "busy_gpus",
            peak_gpus=peak.cast("int64"),
            gpus_seen=seen.cast("int64"),
            memory_mib=hours.memory_mib,
        )
        return HoldingTables(
            hours=store.arrow(hours.order_by(["holding", "start_ms"])),
            holdings=store.arrow(facts.order_by("holding")),
            pods=store.arrow(pod.select("workload_id", "holding")),
        )


def workload_labels(store: Store, workload_ids: list[str]) -> dict[str, dict[str, str]]:
    """The labels of these workloads (those the store knows)."""
    if not workload_ids:
        return {}
    rows = store.raw(
        "SELECT workload_id, labels FROM workloads WHERE workload_id IN (SELECT unnest(?))",
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
        busy_n=m.busy.cast("int64").sum(), held_n=m.count()
    )
    return at.group_by(p_key=at.m_key, p_hour=at.hour).aggregate(
        peak=at.busy_n.max(), seen=at.held_n.max()
    )


def _pod_hours(store: Store, temps: Temps, s: int, e: int) -> ir.Table:
    """Steps 1 and 2: per workload and hour (a temporary table)."""
    u = _usage(store, s, e)
    en = store.table("gpu_energy")
    en = en.filter((en.ts_ms >= s) & (en.ts_ms < e) & en.fb_used_mib.notnull())
    j = u.mutate(fb=ibis.null("float64"))
    if store.arrow(en.select("ts_ms").limit(1)).num_rows:  # no readings: no join to pay
        # one reading per GPU and instant (two sources may both have read it): the join
        # must not repeat a sample
        en = en.group_by(e_ts="ts_ms", e_node="node_id", e_gpu="gpu_id").aggregate(
            fb=en.fb_used_mib.max()
        )
        j = u.left_join(en, [u.ts_ms == en.e_ts, u.node_id == en.e_node, u.gpu_id == en.e_gpu])
    first = temps.create(
        "rec_hours",
        j.group_by(["workload_id", "hour"]).aggregate(
            held_ms=j.held_req.sum(),
            used_ms=j.used.sum(),
            memory_mib=j.fb.max(),
            any_busy=j.busy.any(),
        ),
    )
    # 2. workloads that may hold several GPUs at once (a request of more than one, or none
    #    known). A request of one GPU (or one MIG instance, or one time-slice) is one
    #    device at a time.
    w = store.table("workloads")
    one = w.filter(w.gpu_request.notnull() & (w.gpu_request <= 1)).select(one_id=w.workload_id)
    ids = first.select(m_id=first.workload_id).distinct()
    ids = ids.anti_join(one, ids.m_id == one.one_id)
    if store.arrow(ids.limit(1)).num_rows:
        ids = temps.create("rec_multi", ids.mutate(m_key=ids.m_id))
        peaks = _peaks(u, ids)
        f = first.left_join(peaks, [first.workload_id == peaks.p_key, first.hour == peaks.p_hour])
    else:
        f = first.mutate(peak=ibis.null("int64"), seen=ibis.null("int64"))
    return temps.create(
        "rec_pod_hours",
        f.select(
            workload_id=f.workload_id,
            start_ms=f.hour,
            held_gpus=f.held_ms.cast("float64") / HOUR_MS,
            busy_gpus=f.used_ms.cast("float64") / HOUR_MS,
            peak_gpus=f.peak.fill_null(f.any_busy.cast("int64")).cast("int64"),
            gpus_seen=f.seen.fill_null(1).cast("int64"),
            memory_mib=f.memory_mib,
        ),
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
