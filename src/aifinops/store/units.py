"""Counter increases in a window (requests, tokens, serving time, jobs), as Ibis expressions;
the Slurm jobs that ended in a window."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from aifinops.store import rollups
from aifinops.store.db import Store

TOKENS = ("prompt_tokens", "generation_tokens")


def _increases(store: Store, start_ms: int, end_ms: int) -> ir.Table:
    """The counter samples in [start, end), each with `inc`: its increase over the series'
    (pod, server, model, metric) previous sample. A drop is a counter reset: the new value
    is the increase. A series' first sample is its baseline (what it counted before is not
    known to fall in the window)."""
    c = store.table("serving_counters")
    c = c.filter(c.ts_ms < end_ms)
    w = ibis.window(group_by=[c.workload_id, c.server, c.model, c.metric], order_by=c.ts_ms)
    prev = c.value.lag().over(w)
    inc = prev.isnull().ifelse(0.0, (c.value >= prev).ifelse(c.value - prev, c.value))
    c = c.mutate(inc=inc)
    return c.filter(c.ts_ms >= start_ms)


def counter_increases(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """model, metric, increase: the sum of the increases of every series in [start, end)."""
    c = _increases(store, start_ms, end_ms)
    return store.arrow(
        c.group_by(["model", "metric"])
        .aggregate(increase=c.inc.sum())
        .order_by(["model", "metric"])
    )


def workload_increases(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """workload_id, model, metric, increase, namespace, labels, ns_labels: the counters'
    increases in [start, end) per workload (null where the scrape named no pod) and model
    (a job counter's queue), with what attribution reads of the workload: its namespace
    and labels and the namespace's labels (null where the workload is not known)."""
    c = _increases(store, start_ms, end_ms)
    per = c.group_by(["workload_id", "model", "metric"]).aggregate(increase=c.inc.sum())
    return store.arrow(_attributable(store, per).order_by(["workload_id", "model", "metric"]))


def ended_jobs(store: Store, start_ms: int, end_ms: int) -> pa.Table:
    """workload_id, jobs, namespace, labels, ns_labels: each workload of a Slurm job that
    ended in [start, end) (a job is one workload per node it ran on), with its part of the
    job (1 / the job's workloads, so a job counts once however it is grouped)."""
    w = store.table("workloads")
    w = w.filter((w.kind == "slurm-job") & w.controller.notnull())
    w = w.mutate(parts=w.workload_id.count().over(ibis.window(group_by=w.controller)))
    w = w.filter((w.end_ms >= start_ms) & (w.end_ms < end_ms))
    jobs = w.select("workload_id", jobs=1.0 / w.parts.cast("float64"))
    return store.arrow(_attributable(store, jobs).order_by("workload_id"))


def counts_jobs(store: Store, start_ms: int, end_ms: int) -> bool:
    """Whether [start, end) holds a job counter's sample or a Slurm job's end."""
    c = store.table("serving_counters")
    c = c.filter(c.metric.isin(["jobs", "processing_seconds"]) & (c.ts_ms >= start_ms)
                 & (c.ts_ms < end_ms))  # fmt: skip
    w = store.table("workloads")
    w = w.filter((w.kind == "slurm-job") & (w.end_ms >= start_ms) & (w.end_ms < end_ms))
    return bool(store.arrow(c.select("ts_ms").limit(1)).num_rows
                or store.arrow(w.select("workload_id").limit(1)).num_rows)  # fmt: skip


def _attributable(store: Store, t: ir.Table) -> ir.Table:
    """`t` (with a workload_id) with its workload's namespace and labels and the
    namespace's labels, which the attribution rules read."""
    w = store.table("workloads").select(wl_id="workload_id", namespace="namespace",
                                        labels="labels")  # fmt: skip
    ns = store.table("namespaces").select(ns_name="namespace", ns_labels="labels")
    j = t.left_join(w, t.workload_id == w.wl_id)
    j = j.left_join(ns, j.namespace == ns.ns_name)
    return j.drop("wl_id", "ns_name")


def served_models(store: Store, start_ms: int, end_ms: int) -> ir.Table:
    """What each workload served in [start, end), by its own serving counters: one row per
    workload and model it names (sv_workload, sv_model), with the workload's share of the
    model (`frac`), on what that share is based (`basis`: tokens, where the workload
    counted any; else requests; else job processing time; else jobs completed; else an
    even split; a job counter's "model" is its queue) and whether the row is the workload's
    `last` (by model name), which takes what the others' rounded shares leave."""
    c = _increases(store, start_ms, end_ms)
    c = c.filter(c.workload_id.notnull() & c.model.notnull())
    per = c.group_by(sv_workload=c.workload_id, sv_model=c.model).aggregate(
        tokens=c.metric.isin(TOKENS).ifelse(c.inc, 0.0).sum(),
        requests=(c.metric == "requests").ifelse(c.inc, 0.0).sum(),
        seconds=(c.metric == "processing_seconds").ifelse(c.inc, 0.0).sum(),
        jobs=(c.metric == "jobs").ifelse(c.inc, 0.0).sum(),
    )
    w = ibis.window(group_by=per.sv_workload)
    ranked = ibis.window(group_by=per.sv_workload, order_by=per.sv_model)
    per = per.mutate(
        all_tokens=per.tokens.sum().over(w),
        all_requests=per.requests.sum().over(w),
        all_seconds=per.seconds.sum().over(w),
        all_jobs=per.jobs.sum().over(w),
        n=per.count().over(w),
        rank=ibis.row_number().over(ranked),
    )
    return per.select(
        "sv_workload",
        "sv_model",
        frac=ibis.cases(
            (per.all_tokens > 0, per.tokens / per.all_tokens),
            (per.all_requests > 0, per.requests / per.all_requests),
            (per.all_seconds > 0, per.seconds / per.all_seconds),
            (per.all_jobs > 0, per.jobs / per.all_jobs),
            else_=1.0 / per.n.cast("float64"),
        ),
        basis=ibis.cases(
            (per.all_tokens > 0, ibis.literal("tokens")),
            (per.all_requests > 0, ibis.literal("requests")),
            (per.all_seconds > 0, ibis.literal("processing_seconds")),
            (per.all_jobs > 0, ibis.literal("jobs")),
            else_=ibis.literal("even"),
        ),
        last=per.rank == per.n - 1,
        models=per.n,
    )


def energy_increases(
    store: Store, start_ms: int | None = None, end_ms: int | None = None
) -> pa.Table:
    """node_id, gpu_id, energy_mj, span_ms: per GPU, the energy counter's increase between
    consecutive readings whose later one lies in [start, end) (a drop is a reset: the new
    reading is the increase), and the time those readings span. Ends on whole hours (or
    none) read the roll-up that holds those sums per hour or day (store/rollups.py)."""
    rolled = rollups.energy_table(start_ms, end_ms)
    if rolled is not None:
        r = store.table(rolled)
        if start_ms is not None:
            r = r.filter(r.ts_ms >= start_ms)
        if end_ms is not None:
            r = r.filter(r.ts_ms < end_ms)
        return store.arrow(
            r.group_by(["node_id", "gpu_id"])
            .aggregate(energy_mj=r.energy_mj.sum(), span_ms=r.span_ms.sum())
            .order_by(["node_id", "gpu_id"])
        )
    e = store.table("gpu_energy")
    e = e.filter(e.energy_mj.notnull())
    if end_ms is not None:
        e = e.filter(e.ts_ms < end_ms)
    w = ibis.window(group_by=[e.node_id, e.gpu_id], order_by=e.ts_ms)
    prev = e.energy_mj.lag().over(w)
    prev_ts = e.ts_ms.lag().over(w)
    e = e.mutate(
        inc=prev.isnull().ifelse(
            0.0, (e.energy_mj >= prev).ifelse(e.energy_mj - prev, e.energy_mj)
        ),
        dt=prev_ts.isnull().ifelse(0, e.ts_ms - prev_ts),
    )
    if start_ms is not None:
        e = e.filter(e.ts_ms >= start_ms)
    return store.arrow(
        e.group_by(["node_id", "gpu_id"])
        .aggregate(energy_mj=e.inc.sum(), span_ms=e.dt.sum())
        .order_by(["node_id", "gpu_id"])
    )
