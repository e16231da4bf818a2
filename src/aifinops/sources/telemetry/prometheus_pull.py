"""Prometheus as a range source: dcgm-exporter series in parts of a window, then the
kube-state-metrics series (pods, nodes, namespaces) and the model servers' counters.

Each step takes the last sample within it (`last_over_time`), so a series that stopped is
not carried forward; steps with no DCGM data are reported as gaps. The window is read in
parts of `part_steps` steps, each handed on as it is read, so memory stays bounded."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import pyarrow as pa

from aifinops.core.windows import Window, from_ms, parse_duration
from aifinops.errors import UsageError
from aifinops.sources.base import EmptyRead, Facts, ReadContext, Reading, SourceConfig, register
from aifinops.sources.telemetry import dcgm
from aifinops.sources.telemetry import prometheus as prom


class PrometheusConfig(SourceConfig):
    kind: Literal["prometheus"] = "prometheus"
    url: str
    step: str = "1m"
    backfill: str = "1h"  # how far back the first run reaches
    window: str | None = None  # START,END: a one-off pull instead of from the checkpoint
    timeout: float = 30.0
    max_points: int = prom.MAX_POINTS
    part_steps: int = 240


@register
class PrometheusSource:
    kind: ClassVar[str] = "prometheus"
    mode: ClassVar[str] = "range"
    description: ClassVar[str] = (
        "Prometheus/Thanos/Mimir API: dcgm-exporter and kube-state-metrics series"
    )
    default_interval: ClassVar[str] = "5m"
    config: ClassVar[type[SourceConfig]] = PrometheusConfig

    def read(self, config: PrometheusConfig, ctx: ReadContext) -> Iterator[Reading]:
        step_ms = int(parse_duration(config.step, what="--step").total_seconds() * 1000)
        if step_ms < 1000:
            raise UsageError("the step must be at least 1s", where="--step")
        if config.window:
            win = Window.parse(config.window)
        else:  # from the checkpoint, whole steps only: the next run starts where this ends
            back = int(parse_duration(config.backfill, what="backfill").total_seconds() * 1000)
            start = ctx.checkpoint_ms if ctx.checkpoint_ms is not None else ctx.now_ms - back
            start -= start % step_ms
            end = ctx.now_ms - ctx.now_ms % step_ms
            if end <= start:
                return
            win = Window(from_ms(start), from_ms(end))
        client = prom.PromClient(config.url, timeout=config.timeout, max_points=config.max_points)
        client.check()
        parts = _Pull(client, win, step_ms, config, ctx).parts()
        yield Reading(self.kind, config.url, parts, None, "the same data was",
                      checkpoint_ms=win.end_ms, window=(win.start_ms, win.end_ms))  # fmt: skip


class _Pull:
    def __init__(
        self,
        client: prom.PromClient,
        win: Window,
        step_ms: int,
        config: PrometheusConfig,
        ctx: ReadContext,
    ):
        self.client, self.win, self.step_ms, self.ctx = client, win, step_ms, ctx
        self.url, self.part_steps = config.url, config.part_steps
        # the last sample in (t - step, t]: a range one ms short of the step, since
        # Prometheus 2 includes both ends of a range and Prometheus 3 only the right one
        self.rng = f"[{step_ms - 1}ms]"
        self.gaps: list[prom.Gap] = []

    def parts(self) -> Iterator[Facts]:
        win, step_ms, url = self.win, self.step_ms, self.url
        metrics = [name for name, _ in dcgm.SIGNALS] + [dcgm.ENERGY, dcgm.POWER, dcgm.FB_USED]
        digest = hashlib.sha256(f"prometheus|{url}|{win.start_ms}|{win.end_ms}|{step_ms}|".encode())
        nodes: dict[str, dict[str, Any]] = {}
        pods: dict[str, dict[str, Any]] = {}
        rows = 0
        chunks = list(parts_of(win.start_ms, win.end_ms, step_ms * self.part_steps))
        for n, (a, b) in enumerate(chunks):
            collector = dcgm.Collector()
            part_series: list[prom.Series] = []
            failed = False
            for metric in metrics:
                got = self.client.query_range(f"last_over_time({metric}{self.rng})", a, b, step_ms)
                self.gaps += got.gaps
                failed = failed or bool(got.gaps)
                part_series += got.series
                for series in got.series:
                    for ts, value in series.points:
                        collector.add(ts, metric, series.labels, value)
            if not failed:
                self.gaps += prom.missing_steps(
                    part_series, a, b, step_ms, "no GPU samples (data missing)"
                )
            del part_series
            found = dcgm.to_facts(collector.scrapes(url), step_ms, source="prometheus")
            del collector
            digest.update(table_digest(found.usage).encode())
            rows += found.usage.num_rows
            for row in found.nodes:
                prev = nodes.get(row["node_id"])
                if prev is not None:
                    row = {**row, "gpu_count": max(prev["gpu_count"], row["gpu_count"])}
                nodes[row["node_id"]] = row
            for w in found.workloads:
                prev = pods.get(w["workload_id"])
                if prev is not None:
                    w = {**w, "start_ms": min(prev["start_ms"], w["start_ms"]),
                         "end_ms": max(prev["end_ms"], w["end_ms"])}  # fmt: skip
                pods[w["workload_id"]] = w
            yield Facts(usage=found.usage, energy=found.energy, notes=found.notes)
            if self.ctx.progress:
                self.ctx.progress("prometheus", n + 1, len(chunks))
        if rows == 0:
            raise EmptyRead(
                "no dcgm-exporter GPU series in this window",
                where=url,
                hint="is dcgm-exporter scraped by this Prometheus? "
                + "; ".join(str(g) for g in self.gaps[:3]),
            )
        kube = self.kube_state()
        counters = self.serving_counters()
        for row in kube["nodes"]:
            nodes[row["node_id"]] = {**nodes.get(row["node_id"], {}), **row}
        for row in kube["pods"]:
            prev = pods.get(row["workload_id"], {})
            pods[row["workload_id"]] = {**prev, **row, "labels": row.get("labels") or {}}
        yield Facts(
            span=(win.start_ms, win.end_ms),
            nodes=list(nodes.values()),
            workloads=list(pods.values()),
            prefer_new=True,
            namespaces=kube["namespaces"],
            counters=counters,
            counters_span=(f"prometheus:{url}", win.start_ms, win.end_ms),
            notes=[f"gap {g}" for g in merge_gaps(self.gaps)],
            rows=rows,
            digest=digest.hexdigest(),
        )

    def pull(self, query: str) -> list[prom.Series]:
        got = self.client.query_range(query, self.win.start_ms, self.win.end_ms, self.step_ms)
        self.gaps.extend(got.gaps)
        return got.series

    def serving_counters(self) -> list[dict[str, Any]]:
        """Model-server counters (vLLM, SGLang, TGI, Triton, KServe) per pod and model, at
        each step: the raw counter, summed over other labels (e.g. vLLM's finished_reason)."""
        from aifinops.sources.serving import inference

        acc: dict[tuple[Any, ...], float] = {}
        read: set[str] = set()  # job metrics an earlier spelling gave (read one, not both)
        for server, name, want, metric, scale in inference.counter_queries():
            if server == "jobs" and metric in read:
                continue
            for series in self.pull(prom.selector(name, want)):
                read.add(metric)
                ns, pod, model = inference.series_key(series.labels, server=server)
                wid = f"{ns}/{pod}" if ns and pod else None
                for ts, value in series.points:
                    if inference.counter_value(value):  # finite, from 0 to 2^53
                        key = (ts, wid, server, model, metric)
                        acc[key] = acc.get(key, 0.0) + value * scale
        return [
            {"ts_ms": ts, "workload_id": wid, "server": server, "model": model,
             "metric": metric, "value": value, "source": f"prometheus:{self.url}"}
            for (ts, wid, server, model, metric), value in sorted(
                acc.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
        ]  # fmt: skip

    def kube_state(self) -> dict[str, list[dict[str, Any]]]:
        """Pods, nodes and namespaces from kube-state-metrics series in the window."""
        rng, step_ms, wanted = self.rng, self.step_ms, list(self.ctx.label_keys)
        pods: dict[str, dict[str, Any]] = {}

        def pod(labels: dict[str, str]) -> dict[str, Any] | None:
            ns, name = labels.get("namespace"), labels.get("pod")
            if not ns or not name:
                return None
            return pods.setdefault(
                f"{ns}/{name}",
                {"workload_id": f"{ns}/{name}", "kind": "pod", "namespace": ns, "name": name,
                 "labels": {}, "source": "prometheus"},
            )  # fmt: skip

        for s in self.pull(f"last_over_time(kube_pod_info{rng})"):
            row = pod(s.labels)
            if row is None or not s.points:
                continue
            row["node_id"] = s.labels.get("node") or row.get("node_id")
            if s.labels.get("created_by_kind") and s.labels.get("created_by_name"):
                row["controller"] = f"{s.labels['created_by_kind']}/{s.labels['created_by_name']}"
            first, last = s.points[0][0], s.points[-1][0] + step_ms
            row["start_ms"] = min(first, row.get("start_ms", first))
            row["end_ms"] = max(last, row.get("end_ms", last))
        for s in self.pull(f"last_over_time(kube_pod_labels{rng})"):
            row = pod(s.labels)
            if row is not None:
                row["labels"].update(prom.ksm_labels(s.labels, wanted))
        for resource, column, scale in (
            ("cpu", "cpu_request", 1.0),
            ("memory", "mem_request_gib", 1 / 1024**3),
        ):
            requests = prom.selector("kube_pod_container_resource_requests", {"resource": resource})
            for s in self.pull(f"sum by (namespace, pod) (last_over_time({requests}{rng}))"):
                row = pod(s.labels)
                if row is not None and s.points:
                    row[column] = max(v for _, v in s.points) * scale
        # GPUs, whole or shared: kube-state-metrics writes `nvidia.com/gpu.shared` (the
        # time-slicing resource with renameByDefault, what OpenCost reads) as
        # `nvidia_com_gpu_shared`; the pod keeps the resource's Kubernetes name, as the
        # Kubernetes dump path stores it
        for resource, name in prom.KSM_GPU_RESOURCES.items():
            requests = prom.selector("kube_pod_container_resource_requests", {"resource": resource})
            for s in self.pull(f"sum by (namespace, pod) (last_over_time({requests}{rng}))"):
                row = pod(s.labels)
                if row is not None and s.points:
                    row["gpu_request"] = row.get("gpu_request", 0.0) + max(v for _, v in s.points)
                    row["gpu_resource"] = name
        nodes: dict[str, dict[str, Any]] = {}
        for s in self.pull(f"last_over_time(kube_node_labels{rng})"):
            if s.labels.get("node"):
                row = prom.node_facts(s.labels)
                row["labels"] = prom.ksm_labels(s.labels, [])
                row["source"] = "prometheus"
                nodes[row["node_id"]] = row
        gpu_capacity: dict[str, float] = {}
        for resource, column, scale in (
            ("cpu", "cpu_cores", 1.0),
            ("memory", "memory_gib", 1 / 1024**3),
            *((r, "gpu", 1.0) for r in prom.KSM_GPU_RESOURCES),
        ):
            capacity = prom.selector("kube_node_status_capacity", {"resource": resource})
            for s in self.pull(f"last_over_time({capacity}{rng})"):
                name = s.labels.get("node")
                if name and s.points:
                    row = nodes.setdefault(
                        name, {"node_id": name, "labels": {}, "source": "prometheus"}
                    )
                    if column == "gpu":
                        gpu_capacity[name] = gpu_capacity.get(name, 0.0) + s.points[-1][1]
                    else:
                        row[column] = s.points[-1][1] * scale
        for name, advertised in gpu_capacity.items():
            count = prom.gpus_from_capacity(nodes[name], advertised)
            if count and "gpu_count" not in nodes[name]:
                nodes[name]["gpu_count"] = count
        namespaces = [
            {"namespace": s.labels["namespace"], "labels": prom.ksm_labels(s.labels, wanted)}
            for s in self.pull(f"last_over_time(kube_namespace_labels{rng})")
            if s.labels.get("namespace")
        ]
        return {"pods": list(pods.values()), "nodes": list(nodes.values()),
                "namespaces": namespaces}  # fmt: skip


def parts_of(start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, end) cut into consecutive parts of `size` (aligned to it)."""
    a = start
    while a < end:
        b = min(a - a % size + size, end)
        yield a, b
        a = b


def merge_gaps(gaps: list[prom.Gap]) -> list[prom.Gap]:
    """Adjacent gaps of the same kind, as one."""
    out: list[prom.Gap] = []
    for g in sorted(gaps, key=lambda g: (g.what, g.start_ms)):
        if out and out[-1].what == g.what and out[-1].end_ms >= g.start_ms:
            out[-1] = prom.Gap(out[-1].start_ms, max(out[-1].end_ms, g.end_ms), g.what)
        else:
            out.append(g)
    return sorted(out, key=lambda g: g.start_ms)


def table_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
