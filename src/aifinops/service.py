"""The one façade: config, sources, store and engine wired together for the CLI and API."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.bills_service import BillsService
from aifinops.config import Settings
from aifinops.core.attribution import resolve_dimensions
from aifinops.core.model import (
    ALL_DIMENSIONS,
    BUCKETS,
    IDLE,
    UNALLOCATED,
    CostReport,
    CostRow,
    IdlePolicy,
    SharedGpuPolicy,
    UnitCounts,
    UnpricedNode,
    normalise_dimension,
)
from aifinops.core.money import ZERO, dollars_from_units, hours_from_ms
from aifinops.core.pricing import (
    Catalog,
    CatalogOffer,
    NodeFacts,
    NodePrice,
    NodeRule,
    resolve_node_price,
    same_gpu,
)
from aifinops.core.windows import (
    Window,
    align_up,
    from_ms,
    iso_ms,
    parse_duration,
    parse_instant,
)
from aifinops.errors import AifinopsError, InputError, UsageError
from aifinops.sources import dcgm, facts, inference, opencost, prometheus, slurm
from aifinops.sources import registry as source_registry
from aifinops.sources.catalog import bundled_offers
from aifinops.sources.custom_pricing import read_custom_pricing
from aifinops.sources.holders import SIGNALS, assign_holders
from aifinops.sources.http import fetch_text, is_url, post_bytes
from aifinops.sources.kubernetes import read_dump
from aifinops.sources.nvidia_smi import parse_dir
from aifinops.sources.owners import Owner, read_owners
from aifinops.sources.synthetic import Fleet, usage_batches
from aifinops.store.allocate import AllocationQuery, allocate, price_table
from aifinops.store.db import Store
from aifinops.store.units import counter_increases, energy_increases

Progress = Callable[[str, int, int], None]
SKEW_MS = 300_000  # sample timestamps this far from the scrape time are reported


@dataclass
class IngestResult:
    source: str
    path: str
    status: str  # loaded | unchanged
    rows: int = 0
    node: str | None = None
    workloads: int = 0
    window: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SourceRun:
    name: str
    kind: str
    at_ms: int
    status: str = "failed"  # ok | unchanged | failed
    rows: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Counters:
    rows: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[Any] = field(default_factory=list)


@dataclass
class _KubeState:
    pods: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[Any] = field(default_factory=list)


def _table_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class Service(BillsService):
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None):
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._store: Store | None = None
        self._catalog: Catalog | None = None
        self.price_notes: list[str] = []

    # -- plumbing ---------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.db)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def catalog(self) -> Catalog:
        """Fresh price-API offers first (their regions are exact), then the bundled catalog.
        Configured APIs whose cache has expired are asked again once; when they cannot be
        reached the bundled catalog is used and `price_notes` says so."""
        if self._catalog is None:
            api = self.settings.prices.api
            fresh: list[CatalogOffer] = []
            if api.providers:
                cached = self._cached_offers()
                stale = [p for p in api.providers if p not in cached]
                if stale:
                    self.refresh_prices(stale)
                    cached = self._cached_offers()
                for provider in api.providers:
                    fresh += cached.get(provider, [])
            self._catalog = Catalog(fresh + bundled_offers())
        return self._catalog

    def _cached_offers(self) -> dict[str, list[CatalogOffer]]:
        ttl = int(
            parse_duration(self.settings.prices.api.ttl, what="prices.api.ttl").total_seconds()
        )
        now = self._now_ms()
        out: dict[str, list[CatalogOffer]] = {}
        for provider, fetched, payload in self.store.raw(
            "SELECT provider, fetched_ms, offers FROM price_cache"
        ):
            if now - fetched <= ttl * 1000:
                out[provider] = [_offer_from(d) for d in json.loads(payload)]
        return out

    def refresh_prices(self, providers: Sequence[str] | None = None) -> list[IngestResult]:
        """Ask the configured price APIs again and cache what they say."""
        from aifinops.sources import price_apis

        api = self.settings.prices.api
        wanted = list(providers or api.providers)
        bundled = bundled_offers()
        types = {
            (r[0] or "", r[1])
            for r in self.store.raw(
                "SELECT provider, instance_type FROM nodes WHERE instance_type IS NOT NULL"
            )
        }
        results = []
        for provider in wanted:
            result = IngestResult(f"prices:{provider}", provider, "unchanged")
            try:
                if provider == "azure":
                    sizes = sorted({t for p, t in types if p == "azure"})
                    offers = price_apis.azure_offers(
                        sizes, api.azure_region, base_url=api.azure_url, catalog=bundled
                    )
                elif provider == "gcp":
                    offers = price_apis.gcp_offers(api.gcp_api_key, base_url=api.gcp_url)
                else:
                    offers = price_apis.aws_offers(
                        self._aws_pricing_client(),
                        sorted({t for p, t in types if p == "aws"}),
                        api.aws_region,
                        bundled,
                    )
            except Exception as error:  # offline, refused, malformed: say so, keep going
                as_of = max((o.as_of for o in bundled if o.provider == provider), default="")
                note = (
                    f"price API for {provider} unreachable ({error}); the bundled catalog "
                    f"(prices as of {as_of or 'unknown'}) is used"
                )
                self.price_notes.append(note)
                result.status, result.notes = "failed", [note]
                results.append(result)
                continue
            payload = json.dumps([_offer_dict(o) for o in offers])
            self.store.raw(
                "INSERT INTO price_cache VALUES (?, ?, ?) ON CONFLICT (provider) DO UPDATE "
                "SET fetched_ms = excluded.fetched_ms, offers = excluded.offers",
                [provider, self._now_ms(), payload],
            )
            result.status, result.rows = "loaded", len(offers)
            results.append(result)
        self._catalog = None
        return results

    def _aws_pricing_client(self) -> Any:  # pragma: no cover - needs AWS credentials
        import boto3

        return boto3.client("pricing", region_name="us-east-1")

    # -- ingest -----------------------------------------------------------------------
    def ingest_nvidia_smi(
        self,
        path: Path,
        owners_file: Path | None = None,
        host: str | None = None,
        timezone: str = "UTC",
        owners: Sequence[Owner] | None = None,
    ) -> IngestResult:
        if not path.exists():
            raise InputError("no such file or directory", where=str(path))
        host = host or (path.name if path.is_dir() else path.parent.name)
        log = parse_dir(path, tz=timezone)
        owner_rows = list(owners or []) + (read_owners(owners_file) if owners_file else [])
        digest = _digest(
            [Path(p) for p in sorted(log.files)] + ([owners_file] if owners_file else []),
            extra=f"{host}|{timezone}|{sorted((o.pid, o.workload, o.host or '', o.start_ms or 0, o.end_ms or 0, sorted(o.labels.items())) for o in owners or [])}",  # noqa: E501
        )
        result = IngestResult(
            "nvidia-smi", str(path), "unchanged", node=host, notes=list(log.warnings)
        )
        if self._already(digest, result, "these logs were"):
            return result
        held = assign_holders(log, host, owner_rows)
        models = {m for m in held.gpus.values() if m}
        node = {
            "node_id": host,
            "gpu_model": sorted(models)[0] if models else None,
            "gpu_count": len(held.gpus),
            "util_signal": SIGNALS[log.device_kind or "query-gpu"],
            "source": "nvidia-smi",
            "labels": {},
        }
        store = self.store
        with store.transaction():
            # replace what an earlier, overlapping log of this host put there
            store.delete_usage([host], held.start_ms, held.end_ms)
            rows = store.write_usage(held.usage)
            self._merge_nodes([node])
            self._merge_workloads(held.workloads)
            self._log(digest, "nvidia-smi", str(path), host, held.start_ms, held.end_ms, rows)
        result.status, result.rows = "loaded", rows
        result.workloads = len(held.workloads)
        result.window = (held.start_ms, held.end_ms)
        result.notes += held.notes
        return result

    def ingest_kubernetes(self, paths: Iterable[Path]) -> list[IngestResult]:
        results = []
        for path in paths:
            digest = _digest([path], extra="kubernetes")
            result = IngestResult("kubernetes", str(path), "unchanged")
            if self._already(digest, result, "this file was"):
                results.append(result)
                continue
            objects = read_dump(path)
            with self.store.transaction():
                self._merge_kube(objects)
                self._log(
                    digest,
                    "kubernetes",
                    str(path),
                    None,
                    None,
                    None,
                    len(objects.nodes) + len(objects.pods),
                )
            result.status = "loaded"
            result.rows = len(objects.nodes) + len(objects.pods) + len(objects.namespaces)
            result.workloads = len(objects.pods)
            result.notes = [
                f"{len(objects.nodes)} nodes, {len(objects.pods)} pods, "
                f"{len(objects.namespaces)} namespaces"
            ]
            if objects.skipped:
                result.notes.append(
                    "skipped kinds: "
                    + ", ".join(f"{k} ({v})" for k, v in sorted(objects.skipped.items()))
                )
            results.append(result)
        return results

    def ingest_dcgm(
        self,
        sources: Sequence[str],
        *,
        at: str | None = None,
        interval: str = "30s",
        host: str | None = None,
    ) -> list[IngestResult]:
        """Load dcgm-exporter `/metrics` scrapes from files or URLs.

        A scrape without sample timestamps is taken at `at` (ISO time), else the file's
        modification time, else now for a URL; each scrape covers `interval`."""
        interval_ms = int(parse_duration(interval, what="--interval").total_seconds() * 1000)
        if interval_ms <= 0:
            raise UsageError("the interval must be positive", where="--interval")
        results = []
        for src in sources:
            text, at_ms = self._read_source(src, at)
            digest = hashlib.sha256(
                f"dcgm|{at_ms}|{interval_ms}|{host}|".encode() + text.encode()
            ).hexdigest()
            result = IngestResult("dcgm", src, "unchanged")
            if self._already(digest, result, "this scrape was"):
                results.append(result)
                continue
            scrapes = dcgm.read_scrapes(text, src, at_ms, default_host=host)
            skew: dict[str, int] = {}
            for sc in scrapes:
                if abs(sc.ts_ms - at_ms) > SKEW_MS:
                    for h, _ in sc.devices:
                        if abs(sc.ts_ms - at_ms) > abs(skew.get(h, 0)):
                            skew[h] = sc.ts_ms - at_ms
            got = dcgm.to_facts(scrapes, interval_ms)
            for h, off in sorted(skew.items()):
                way = "ahead of" if off > 0 else "behind"
                got.notes.append(
                    f"clock skew: {h}'s sample timestamps are {abs(off) / 1000:,.0f} s {way} "
                    "the time of the scrape; they are stored as the exporter stamped them"
                )
            result.notes += got.notes
            if got.usage.num_rows == 0:
                raise InputError(
                    "no GPU samples in this scrape",
                    where=src,
                    hint="is it a dcgm-exporter /metrics page? " + "; ".join(got.notes[:3]),
                )
            with self.store.transaction():
                self._write_samples(got.usage, got.start_ms, got.end_ms, digest, "dcgm", src)
                self._merge_nodes(got.nodes)
                self._merge_workloads(got.workloads)
                if got.energy:
                    for row in got.energy:
                        self.store.raw(
                            "DELETE FROM gpu_energy WHERE node_id = ? AND gpu_id = ? AND ts_ms = ?",
                            [row["node_id"], row["gpu_id"], row["ts_ms"]],
                        )
                    self.store.insert_arrow(
                        "gpu_energy", facts.rows_table(got.energy, facts.GPU_ENERGY)
                    )
            result.status, result.rows = "loaded", got.usage.num_rows
            result.node = ", ".join(sorted(n["node_id"] for n in got.nodes))
            result.workloads = len(got.workloads)
            result.window = (got.start_ms, got.end_ms)
            results.append(result)
        return results

    def ingest_prometheus(
        self,
        url: str,
        *,
        window: str,
        step: str = "1m",
        timeout: float = 30.0,
        max_points: int = prometheus.MAX_POINTS,
        part_steps: int = 240,
        progress: Progress | None = None,
    ) -> IngestResult:
        """Pull dcgm-exporter and kube-state-metrics series from a Prometheus HTTP API.

        Each step takes the last sample within it (`last_over_time`), so a series that
        stopped is not carried forward; steps with no DCGM data are reported as gaps. The
        window is read in parts of `part_steps` steps, staged in the store and written in
        one transaction at the end, so memory stays bounded on long windows."""
        win = Window.parse(window)
        step_ms = int(parse_duration(step, what="--step").total_seconds() * 1000)
        if step_ms < 1000:
            raise UsageError("the step must be at least 1s", where="--step")
        client = prometheus.PromClient(url, timeout=timeout, max_points=max_points)
        client.check()
        result = IngestResult("prometheus", url, "unchanged")
        # the last sample in (t - step, t]: a range one ms short of the step, since
        # Prometheus 2 includes both ends of a range and Prometheus 3 only the right one
        rng = f"[{step_ms - 1}ms]"
        metrics = [name for name, _ in dcgm.SIGNALS] + [dcgm.ENERGY, dcgm.POWER, dcgm.FB_USED]
        gaps: list[prometheus.Gap] = []
        nodes: dict[str, dict[str, Any]] = {}
        pods: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        digest = hashlib.sha256(f"prometheus|{url}|{win.start_ms}|{win.end_ms}|{step_ms}|".encode())
        stage = self.store.stage("prom_usage", facts.GPU_USAGE)
        energy_stage = self.store.stage("prom_energy", facts.GPU_ENERGY)
        rows = 0
        parts = list(_parts(win.start_ms, win.end_ms, step_ms * part_steps))
        try:
            for n, (a, b) in enumerate(parts):
                collector = dcgm.Collector()
                part_series: list[prometheus.Series] = []
                failed = False
                for metric in metrics:
                    got = client.query_range(f"last_over_time({metric}{rng})", a, b, step_ms)
                    gaps += got.gaps
                    failed = failed or bool(got.gaps)
                    part_series += got.series
                    for series in got.series:
                        for ts, value in series.points:
                            collector.add(ts, metric, series.labels, value)
                if not failed:
                    gaps += prometheus.missing_steps(
                        part_series, a, b, step_ms, "no GPU samples (data missing)"
                    )
                del part_series
                found = dcgm.to_facts(collector.scrapes(url), step_ms, source="prometheus")
                del collector
                notes += [x for x in found.notes if x not in notes]
                digest.update(_table_digest(found.usage).encode())
                rows += self.store.stage_append(stage, found.usage)
                if found.energy:
                    self.store.stage_append(
                        energy_stage, facts.rows_table(found.energy, facts.GPU_ENERGY)
                    )
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
                if progress:
                    progress("prometheus", n + 1, len(parts))
            if rows == 0:
                raise InputError(
                    "no dcgm-exporter GPU series in this window",
                    where=url,
                    hint="is dcgm-exporter scraped by this Prometheus? "
                    + "; ".join(str(g) for g in gaps[:3]),
                )
            kube = self._kube_state(client, win, step_ms, rng)
            counters = self._serving_counters(client, win, step_ms, url)
            gaps = _merge_gaps(gaps + kube.gaps + counters.gaps)
            for row in kube.nodes:
                nodes[row["node_id"]] = {**nodes.get(row["node_id"], {}), **row}
            for row in kube.pods:
                prev = pods.get(row["workload_id"], {})
                pods[row["workload_id"]] = {**prev, **row, "labels": row.get("labels") or {}}
            key = digest.hexdigest()
            result.window = (win.start_ms, win.end_ms)
            result.notes += notes + [f"gap {g}" for g in gaps]
            if self._already(key, result, "the same data was"):
                return result
            with self.store.transaction():
                node_ids = sorted(nodes)
                self.store.delete_usage(node_ids, win.start_ms, win.end_ms)
                self.store.write_usage_from(stage)
                self._log(key, "prometheus", url, ",".join(node_ids)[:200],
                          win.start_ms, win.end_ms, rows)  # fmt: skip
                self._merge_nodes(list(nodes.values()), prefer_new=True)
                self._merge_workloads(list(pods.values()), prefer_new=True)
                if kube.namespaces:
                    self.store.upsert_arrow(
                        "namespaces",
                        facts.rows_table(kube.namespaces, facts.NAMESPACES),
                        "namespace",
                    )
                self.store.raw(
                    "DELETE FROM gpu_energy WHERE source = 'prometheus' AND ts_ms >= ? "
                    "AND ts_ms < ?",
                    [win.start_ms, win.end_ms],
                )
                self.store.raw(f"INSERT INTO gpu_energy SELECT * FROM {energy_stage}")
                self.store.raw(
                    "DELETE FROM serving_counters WHERE source = ? AND ts_ms >= ? AND ts_ms < ?",
                    [f"prometheus:{url}", win.start_ms, win.end_ms],
                )
                if counters.rows:
                    self.store.insert_arrow(
                        "serving_counters", facts.rows_table(counters.rows, facts.COUNTERS)
                    )
        finally:
            self.store.drop_stage(stage)
            self.store.drop_stage(energy_stage)
        result.status, result.rows = "loaded", rows
        result.node = ", ".join(sorted(nodes))
        result.workloads = len(pods)
        return result

    def _serving_counters(
        self, client: prometheus.PromClient, win: Window, step_ms: int, url: str
    ) -> _Counters:
        """Model-server counters (vLLM, SGLang, TGI, Triton, KServe) per pod and model, at
        each step: the raw counter, summed over other labels (e.g. vLLM's finished_reason)."""
        out = _Counters()
        acc: dict[tuple[Any, ...], float] = {}
        for server, name, want, metric, scale in inference.counter_queries():
            got = client.query_range(
                prometheus.selector(name, want), win.start_ms, win.end_ms, step_ms
            )
            out.gaps += got.gaps
            for series in got.series:
                ns, pod, model = inference.series_key(series.labels)
                wid = f"{ns}/{pod}" if ns and pod else None
                for ts, value in series.points:
                    if value == value and value >= 0:  # not NaN, not negative
                        key = (ts, wid, server, model, metric)
                        acc[key] = acc.get(key, 0.0) + value * scale
        out.rows = [
            {"ts_ms": ts, "workload_id": wid, "server": server, "model": model,
             "metric": metric, "value": value, "source": f"prometheus:{url}"}
            for (ts, wid, server, model, metric), value in sorted(
                acc.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
        ]  # fmt: skip
        return out

    def _kube_state(
        self, client: prometheus.PromClient, win: Window, step_ms: int, rng: str
    ) -> _KubeState:
        """Pods, nodes and namespaces from kube-state-metrics series in the window."""
        out = _KubeState()
        wanted = [k for keys in self.settings.attribution.rules().label_keys.values() for k in keys]

        def pull(query: str) -> list[prometheus.Series]:
            got = client.query_range(query, win.start_ms, win.end_ms, step_ms)
            out.gaps.extend(got.gaps)
            return got.series

        pods: dict[str, dict[str, Any]] = {}

        def pod(labels: dict[str, str]) -> dict[str, Any] | None:
            ns, name = labels.get("namespace"), labels.get("pod")
            if not ns or not name:
                return None
            return pods.setdefault(
                f"{ns}/{name}",
                {
                    "workload_id": f"{ns}/{name}",
                    "kind": "pod",
                    "namespace": ns,
                    "name": name,
                    "labels": {},
                    "source": "prometheus",
                },
            )

        for s in pull(f"last_over_time(kube_pod_info{rng})"):
            row = pod(s.labels)
            if row is None or not s.points:
                continue
            row["node_id"] = s.labels.get("node") or row.get("node_id")
            if s.labels.get("created_by_kind") and s.labels.get("created_by_name"):
                row["controller"] = f"{s.labels['created_by_kind']}/{s.labels['created_by_name']}"
            first, last = s.points[0][0], s.points[-1][0] + step_ms
            row["start_ms"] = min(first, row.get("start_ms", first))
            row["end_ms"] = max(last, row.get("end_ms", last))
        for s in pull(f"last_over_time(kube_pod_labels{rng})"):
            row = pod(s.labels)
            if row is not None:
                row["labels"].update(prometheus.ksm_labels(s.labels, wanted))
        for resource, column, scale in (
            ("cpu", "cpu_request", 1.0),
            ("memory", "mem_request_gib", 1 / 1024**3),
            ("nvidia_com_gpu", "gpu_request", 1.0),
        ):
            query = (
                "sum by (namespace, pod) (last_over_time("
                + prometheus.selector(
                    "kube_pod_container_resource_requests", {"resource": resource}
                )
                + f"{rng}))"
            )
            for s in pull(query):
                row = pod(s.labels)
                if row is not None and s.points:
                    row[column] = max(v for _, v in s.points) * scale
                    if resource == "nvidia_com_gpu":
                        row["gpu_resource"] = "nvidia.com/gpu"
        out.pods = list(pods.values())
        nodes: dict[str, dict[str, Any]] = {}
        for s in pull(f"last_over_time(kube_node_labels{rng})"):
            if s.labels.get("node"):
                row = prometheus.node_facts(s.labels)
                row["labels"] = prometheus.ksm_labels(s.labels, [])
                row["source"] = "prometheus"
                nodes[row["node_id"]] = row
        for resource, column, scale in (
            ("cpu", "cpu_cores", 1.0),
            ("memory", "memory_gib", 1 / 1024**3),
        ):
            query = (
                "last_over_time("
                + prometheus.selector("kube_node_status_capacity", {"resource": resource})
                + f"{rng})"
            )
            for s in pull(query):
                name = s.labels.get("node")
                if name and s.points:
                    row = nodes.setdefault(
                        name, {"node_id": name, "labels": {}, "source": "prometheus"}
                    )
                    row[column] = s.points[-1][1] * scale
        out.nodes = list(nodes.values())
        for s in pull(f"last_over_time(kube_namespace_labels{rng})"):
            if s.labels.get("namespace"):
                out.namespaces.append(
                    {
                        "namespace": s.labels["namespace"],
                        "labels": prometheus.ksm_labels(s.labels, wanted),
                    }
                )
        return out

    def ingest_slurm(self, paths: Iterable[Path], timezone: str = "UTC") -> list[IngestResult]:
        """Load `sacct --json` or `sacct --parsable2` output: jobs become workloads.

        GPU samples on a job's nodes that no telemetry tied to an owner (no pod, no known
        process owner) are given to the job when it held every GPU of the node; a job on
        part of a node needs telemetry that names it (dcgm-exporter `hpc_job`, the agent)."""
        results = []
        for path in paths:
            digest = _digest([path], extra=f"slurm|{timezone}")
            result = IngestResult("slurm", str(path), "unchanged")
            if self._already(digest, result, "this file was"):
                results.append(result)
                continue
            acct = slurm.read_sacct(path, timezone)
            result.notes += acct.problems
            rows = [w for job in acct.jobs for w in job.workloads()]
            gpu_count = {
                r[0]: r[1] or 0 for r in self.store.raw("SELECT node_id, gpu_count FROM nodes")
            }
            claimed = 0
            partial = 0
            with self.store.transaction():
                self._merge_workloads(rows, prefer_new=True)
                for job in acct.jobs:
                    if not job.gpus or job.start_ms is None:
                        continue
                    per_node = job.gpus / max(len(job.nodes), 1)
                    for node in job.nodes:
                        have = gpu_count.get(node, 0)
                        if have and per_node >= have:
                            claimed += self._claim_unowned(
                                node, job.workload_id(node), job.start_ms, job.end_ms
                            )
                        elif have:
                            partial += 1
                self._log(digest, "slurm", str(path), None, None, None, len(rows))
            result.status, result.rows = "loaded", len(rows)
            result.workloads = len(rows)
            steps = sum(j.steps for j in acct.jobs)
            result.notes.append(
                f"{len(acct.jobs)} jobs ({acct.format}), {steps} steps, "
                f"{sum(1 for j in acct.jobs if j.gpus)} with GPUs"
            )
            if claimed:
                result.notes.append(f"{claimed} unowned GPU sample rows given to their jobs")
            if partial:
                result.notes.append(
                    f"{partial} job-node(s) hold part of a node's GPUs: their GPU time comes "
                    "from telemetry that names the job (dcgm-exporter hpc_job, the agent)"
                )
            results.append(result)
        return results

    def _claim_unowned(self, node: str, workload: str, start: int, end: int | None) -> int:
        before = self.store.raw(
            "SELECT count(*) FROM gpu_usage WHERE node_id = ? AND ts_ms >= ? AND ts_ms < ? "
            "AND (workload_id IS NULL OR workload_id LIKE ?)",
            [node, start, end if end is not None else 2**62, f"{node}/pid-%"],
        )[0][0]
        if before:
            self.store.raw(
                "UPDATE gpu_usage SET workload_id = ? WHERE node_id = ? AND ts_ms >= ? "
                "AND ts_ms < ? AND (workload_id IS NULL OR workload_id LIKE ?)",
                [workload, node, start, end if end is not None else 2**62, f"{node}/pid-%"],
            )
        return int(before)

    def ingest_inference(
        self,
        sources: Sequence[str],
        *,
        server: str | None = None,
        at: str | None = None,
        pod: str | None = None,
        model: str | None = None,
    ) -> list[IngestResult]:
        """Load model-server `/metrics` scrapes (vLLM, SGLang, TGI, Triton, KServe).

        `pod` (`namespace/name`) names the pod a scrape came from when its series carry no
        pod labels; `model` names the model of a server whose series carry none (TGI)."""
        if server is not None and server not in inference.SERVERS:
            raise UsageError(
                f"unknown server {server!r}", where="--server", hint=", ".join(inference.SERVERS)
            )
        results = []
        for src in sources:
            text, at_ms = self._read_source(src, at)
            digest = hashlib.sha256(
                f"inference|{at_ms}|{server}|{pod}|{model}|".encode() + text.encode()
            ).hexdigest()
            result = IngestResult("inference", src, "unchanged")
            if self._already(digest, result, "this scrape was"):
                results.append(result)
                continue
            counters = inference.read_counters(text, src, server, model)
            result.notes += counters.problems
            if not counters.values:
                raise InputError(
                    "no serving counters in this scrape",
                    where=src,
                    hint="; ".join(counters.problems[-2:]) or None,
                )
            rows = []
            for (ns, name, mdl, metric), value in sorted(
                counters.values.items(), key=lambda kv: tuple(str(x) for x in kv[0])
            ):
                wid = f"{ns}/{name}" if ns and name else pod
                rows.append(
                    {
                        "ts_ms": at_ms,
                        "workload_id": wid,
                        "server": counters.server,
                        "model": mdl,
                        "metric": metric,
                        "value": value,
                        "source": src,
                    }
                )
            with self.store.transaction():
                self.store.insert_arrow("serving_counters", facts.rows_table(rows, facts.COUNTERS))
                self._log(digest, "inference", src, None, at_ms, at_ms, len(rows))
            result.status, result.rows = "loaded", len(rows)
            result.notes.append(
                f"{counters.server}: " + ", ".join(sorted({str(r["model"]) for r in rows}))
            )
            results.append(result)
        return results

    def _read_source(self, src: str, at: str | None) -> tuple[str, int]:
        """A scrape's text and the instant it stands for."""
        when = parse_instant(at, what="--at") if at else None
        if is_url(src):
            text = fetch_text(src)
            at_dt = when or self._clock()
        else:
            path = Path(src)
            if not path.is_file():
                raise InputError("no such file", where=src)
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as error:
                raise InputError(f"cannot read it: {error.strerror}", where=src) from error
            at_dt = when or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return text, int(at_dt.timestamp() * 1000)

    def _write_samples(
        self, usage: pa.Table, start_ms: int, end_ms: int, digest: str, kind: str, src: str
    ) -> None:
        """Replace the samples of these nodes in [start, end) and log the input (call it
        inside the caller's transaction)."""
        nodes = sorted(set(usage.column("node_id").to_pylist()))
        self.store.delete_usage(nodes, start_ms, end_ms)
        rows = self.store.write_usage(usage)
        self._log(digest, kind, src, ",".join(nodes)[:200], start_ms, end_ms, rows)

    def ingest_kubernetes_api(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        watch_seconds: float = 0.0,
        api: Any = None,
    ) -> IngestResult:
        """Nodes, pods and namespaces from the API (kubeconfig or in-cluster): a list, then,
        for `watch_seconds`, the changes after it. An expired watch lists again."""
        import time

        from aifinops.sources import kube_api

        client = api or kube_api.KubeApi(kubeconfig, context, in_cluster=in_cluster)
        result = IngestResult("kubernetes", client.server, "loaded")
        listing = client.list_all()
        with self.store.transaction():
            self._merge_kube(listing.objects)
        counts = {k: len(v) for k, v in listing.raw.items()}
        result.rows = sum(counts.values())
        result.workloads = counts.get("Pod", 0)
        result.notes.append(
            f"listed {counts.get('Node', 0)} nodes, {counts.get('Pod', 0)} pods, "
            f"{counts.get('Namespace', 0)} namespaces"
        )
        versions = dict(listing.versions)
        events = relists = 0
        deadline = time.monotonic() + watch_seconds
        while watch_seconds > 0 and time.monotonic() < deadline:
            before = events
            for kind in kube_api.KINDS:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                changed: list[tuple[str, dict[str, Any]]] = []
                try:
                    versions[kind] = client.watch(
                        kind,
                        versions[kind],
                        lambda t, obj, into=changed: into.append((t, obj)),
                        seconds=max(1, min(int(left), 10)),
                    )
                except kube_api.Expired:
                    relists += 1
                    items, versions[kind] = client.list(kind)
                    with self.store.transaction():
                        self._merge_kube(kube_api.objects_from({"items": items}, client.server))
                self._apply_kube_events(changed)
                events += len(changed)
            if events == before:
                time.sleep(0.2)  # a server that closes watches at once is not busy-polled
        if watch_seconds > 0:
            result.notes.append(
                f"watched {watch_seconds:g} s: {events} changes"
                + (f", {relists} re-list(s) after an expired watch" if relists else "")
            )
        result.notes.append(
            "resource versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
        )
        return result

    def _merge_kube(self, objects: Any) -> None:
        """Nodes, pods and namespaces from Kubernetes (call inside a transaction)."""
        self._merge_nodes(objects.nodes, prefer_new=True)
        self._merge_workloads(objects.pods, prefer_new=True)
        if objects.namespaces:
            self.store.upsert_arrow(
                "namespaces", facts.rows_table(objects.namespaces, facts.NAMESPACES), "namespace"
            )

    def _apply_kube_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        from aifinops.sources import kube_api

        if not events:
            return
        now_ms = int(self._clock().timestamp() * 1000)
        live = [obj for kind, obj in events if kind in ("ADDED", "MODIFIED")]
        objects = kube_api.objects_from({"items": live}, "watch")
        for kind, obj in events:
            if kind == "DELETED" and obj.get("kind") == "Pod":
                gone = kube_api.objects_from({"items": [obj]}, "watch").pods
                for row in gone:
                    meta = obj.get("metadata") or {}
                    end = iso_ms(meta.get("deletionTimestamp")) or now_ms
                    row["end_ms"] = row.get("end_ms") or end
                objects.pods += gone
        with self.store.transaction():
            self._merge_kube(objects)

    def ingest_opencost(self, sources: Sequence[str]) -> list[IngestResult]:
        """Import OpenCost `/allocation/compute` responses (files or URLs). An allocation
        with the same name and window as one imported before replaces it."""
        wanted = [k for keys in self.settings.attribution.rules().label_keys.values() for k in keys]
        results = []
        for src in sources:
            text, _ = self._read_source(src, None)
            digest = hashlib.sha256(b"opencost|" + text.encode()).hexdigest()
            result = IngestResult("opencost", src, "unchanged")
            if self._already(digest, result, "this response was"):
                results.append(result)
                continue
            rows = opencost.read_allocations(text, src, wanted)
            if not rows:
                raise InputError("no allocations in this response", where=src)
            table = facts.rows_table(rows, facts.ALLOCATIONS)
            pods_by_id: dict[str, dict[str, Any]] = {}
            for pod in (
                {
                    "workload_id": f"{r['namespace']}/{r['pod']}",
                    "kind": "pod",
                    "namespace": r["namespace"],
                    "name": r["pod"],
                    "node_id": r["node_id"],
                    "controller": r["controller"],
                    "start_ms": r["start_ms"],
                    "end_ms": r["end_ms"],
                    "labels": r["labels"],
                    "source": "opencost",
                }
                for r in rows
                if r["pod"] and r["namespace"] and not r["name"].startswith("__")
            ):
                seen = pods_by_id.setdefault(pod["workload_id"], pod)
                seen["start_ms"] = min(seen["start_ms"], pod["start_ms"])
                seen["end_ms"] = max(seen["end_ms"], pod["end_ms"])
            pods = list(pods_by_id.values())
            with self.store.transaction():
                self.store.con.con.register("_incoming_alloc", table)
                try:
                    self.store.raw(
                        "DELETE FROM external_allocations e USING _incoming_alloc i WHERE "
                        "e.source = i.source AND e.name = i.name AND e.start_ms = i.start_ms "
                        "AND e.end_ms = i.end_ms"
                    )
                finally:
                    self.store.con.con.unregister("_incoming_alloc")
                self.store.insert_arrow("external_allocations", table)
                self._merge_workloads(pods)
                starts = [r["start_ms"] for r in rows]
                ends = [r["end_ms"] for r in rows]
                self._log(digest, "opencost", src, None, min(starts), max(ends), len(rows))
            result.status, result.rows = "loaded", len(rows)
            result.workloads = len({p["workload_id"] for p in pods})
            result.window = (min(starts), max(ends))
            results.append(result)
        return results

    def _cost_from_allocations(
        self, win: Window, dims: tuple[str, ...], team: str | None
    ) -> tuple[list[CostRow], Decimal, list[str]]:
        """Rows from imported OpenCost allocations, prorated to the window's overlap and
        attributed with the same rules as the engine's rows."""
        rules = self.settings.attribution.rules()
        found = self.store.raw(
            "SELECT name, start_ms, end_ms, node_id, namespace, pod, labels, namespace_labels, "
            "gpu_hours, gpu_cost, cpu_cost, ram_cost, other_cost FROM external_allocations "
            "WHERE source = 'opencost' AND start_ms < ? AND end_ms > ?",
            [win.end_ms, win.start_ms],
        )
        nodes = {
            r[0]: r[1:]
            for r in self.store.raw(
                "SELECT node_id, gpu_model, provider, region, instance_type FROM nodes"
            )
        }
        groups: dict[tuple[str, ...], list[Decimal]] = {}
        asset = other = Decimal(0)
        for name, start, end, node, ns, pod, labels, ns_labels, gh, gc, cc, rc, oc in found:
            span = max(end - start, 1)
            share = Decimal(min(end, win.end_ms) - max(start, win.start_ms)) / Decimal(span)
            money = [Decimal(str(x or 0)) * share for x in (gh, gc, cc, rc)]
            asset += money[1] + money[2] + money[3]
            other += Decimal(str(oc or 0)) * share
            if name.startswith("__idle__") or name.startswith("__unallocated__") or not ns:
                bucket = IDLE if name.startswith("__idle__") else UNALLOCATED
                if team is not None:
                    continue
                key = dict.fromkeys(dims, bucket)
            else:
                attributed = resolve_dimensions(
                    rules, ns, dict(labels or {}), dict(ns_labels or {})
                )
                if team is not None and attributed["team"] != team:
                    continue
                infra = dict(
                    zip(
                        ("gpu_model", "provider", "region", "instance_type"),
                        nodes.get(node, (None, None, None, None)),
                        strict=True,
                    )
                )
                infra |= {"namespace": ns, "workload": f"{ns}/{pod}", "node": node}
                key = {d: attributed.get(d) or infra.get(d) or UNALLOCATED for d in dims}
            acc = groups.setdefault(tuple(key[d] for d in dims), [Decimal(0)] * 4)
            for i, m in enumerate(money):
                acc[i] += m
        rows = [
            CostRow(
                key=dict(zip(dims, k, strict=True)),
                gpu_hours=v[0],
                gpu_cost=v[1],
                cpu_cost=v[2],
                ram_cost=v[3],
                idle_cost=ZERO,
                waste_cost=ZERO,
                used_gpu_hours=ZERO,
            )
            for k, v in groups.items()
        ]
        notes = [f"from OpenCost allocations ({len(found)} in the window, prorated to it)"]
        if other:
            notes.append(
                f"PV, network, load-balancer, shared and external costs ({other:.2f}) are not "
                "in these rows"
            )
        return rows, asset, notes

    def ingest_agent_segment(self, path: Path) -> IngestResult:
        """Store one closed spool segment of the node agent. A segment stored before (same
        content) changes nothing, so a crash between storing and deleting it is harmless."""
        from aifinops.sources import nvml

        data = path.read_bytes()
        digest = hashlib.sha256(b"agent|" + data).hexdigest()
        result = IngestResult("agent", str(path), "unchanged")
        if self._already(digest, result, "this segment was"):
            return result
        records = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # the last line of a segment cut by a crash: the lines before it still count
                result.notes.append(f"{path}:{number}: not a whole record; skipped")
        if not records:
            self._log(digest, "agent", str(path), None, None, None, 0)
            return result
        got = nvml.segment_facts(records)
        with self.store.transaction():
            self._write_samples(
                got.usage, got.start_ms, got.last_ts_ms + 1, digest, "agent", str(path)
            )
            self._merge_nodes(got.nodes)
            self._merge_workloads(got.workloads)
            if got.energy:
                self.store.insert_arrow(
                    "gpu_energy", facts.rows_table(got.energy, facts.GPU_ENERGY)
                )
        result.status, result.rows = "loaded", got.usage.num_rows
        result.window = (got.start_ms, got.end_ms)
        result.workloads = len(got.workloads)
        return result

    def agent(
        self,
        *,
        spool: Path,
        host: str | None = None,
        interval: str = "1s",
        replay: Path | None = None,
        gpu_names: dict[str, str] | None = None,
        ticks: int | None = None,
        server: str | None = None,
        proc_root: Path = Path("/proc"),
        passwd: Path = Path("/etc/passwd"),
        user_teams: dict[str, str] | None = None,
        per_segment: int = 60,
        sleep: bool = True,
    ) -> Any:
        """Run the node agent: sample (NVML, or a recorded stream), resolve owners, spool,
        and ship closed segments to this store (or POST them to `server`)."""
        import socket

        from aifinops.sources import nvml

        host = host or socket.gethostname()
        interval_ms = int(parse_duration(interval, what="--interval").total_seconds() * 1000)
        sampler = nvml.ReplaySampler(replay, gpu_names) if replay else nvml.NvmlSampler()
        pods = {
            uid: wid
            for wid, uid in self.store.raw(
                "SELECT workload_id, uid FROM workloads WHERE uid IS NOT NULL"
            )
        }
        resolver = nvml.OwnerResolver(
            host, proc_root=proc_root, passwd=passwd, pods=pods, user_teams=user_teams
        )
        if server:
            target = server.rstrip("/") + "/api/v1/agent/segments"

            def ship(segment: Path) -> None:
                post_bytes(target, segment.read_bytes(), "application/x-ndjson")

        else:

            def ship(segment: Path) -> None:
                self.ingest_agent_segment(segment)

        agent = nvml.Agent(
            host, sampler, resolver, nvml.Spool(spool, per_segment), ship, interval_ms
        )
        try:
            agent.run(ticks, sleep=sleep)
        finally:
            agent.stop()
        return agent.stats

    # -- continuous collection ------------------------------------------------------------
    def collect(
        self,
        *,
        once: bool = False,
        seconds: float | None = None,
        only: Sequence[str] | None = None,
        sleep: Callable[[float], None] | None = None,
        report: Callable[[str, SourceRun], None] | None = None,
    ) -> list[SourceRun]:
        """Run the configured sources when due (their `interval`), each with its own
        checkpoint and health kept in the store. `once` runs every source now, one time."""
        import time

        sources = [s for s in self.settings.sources if not only or s.name in only]
        if not sources:
            raise UsageError(
                "no sources to collect",
                where="config: sources",
                hint="add sources to the config file (aifinops sources list shows the kinds)",
            )
        if only:
            unknown = sorted(set(only) - {s.name for s in sources})
            if unknown:
                raise UsageError(f"no source named {', '.join(unknown)}", where="--source")
        pause = sleep or time.sleep
        started = time.monotonic()
        done: list[SourceRun] = []
        while True:
            now = self._now_ms()
            state = self._source_state()
            next_due = None
            for src in sources:
                every = self._interval_ms(src)
                last = (state.get(src.name) or {}).get("last_run_ms")
                due = once or last is None or now >= last + every
                if due:
                    run = self._run_source(src, now, state.get(src.name) or {})
                    done.append(run)
                    if report:
                        report(src.name, run)
                    last = now
                upcoming = last + every
                next_due = upcoming if next_due is None else min(next_due, upcoming)
            if once or (seconds is not None and time.monotonic() - started >= seconds):
                return done
            wait = max(0.5, ((next_due or now) - self._now_ms()) / 1000)
            if seconds is not None:
                wait = min(wait, max(0.0, seconds - (time.monotonic() - started)))
            pause(wait)

    def sources_status(self) -> list[dict[str, Any]]:
        state = self._source_state()
        out = []
        for src in self.settings.sources:
            row = state.get(src.name) or {}
            out.append(
                {
                    "name": src.name,
                    "kind": src.kind,
                    "interval": src.interval or source_registry.KINDS[src.kind].default_interval,
                    "last_run": _iso(row.get("last_run_ms")),
                    "last_ok": _iso(row.get("last_ok_ms")),
                    "checkpoint": _iso(row.get("checkpoint_ms")),
                    "runs": row.get("runs", 0),
                    "failures": row.get("failures", 0),
                    "rows": row.get("rows", 0),
                    "last_error": row.get("last_error"),
                    "state": "never run"
                    if not row
                    else ("failing" if row.get("last_error") else "ok"),
                }
            )
        return out

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _interval_ms(self, src: Any) -> int:
        text = src.interval or source_registry.KINDS[src.kind].default_interval
        return int(parse_duration(text, what=f"sources.{src.name}.interval").total_seconds() * 1000)

    def _source_state(self) -> dict[str, dict[str, Any]]:
        cols = ("name", "kind", "checkpoint_ms", "last_run_ms", "last_ok_ms", "last_error",
                "runs", "failures", "rows")  # fmt: skip
        rows = self.store.raw(f"SELECT {', '.join(cols)} FROM source_state")
        return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}

    def _run_source(self, src: Any, now: int, state: dict[str, Any]) -> SourceRun:
        """One run of one source; an error is recorded, never raised past the loop."""
        run = SourceRun(src.name, src.kind, now)
        checkpoint = state.get("checkpoint_ms")
        try:
            results, checkpoint = self._read_source_once(src, now, checkpoint)
            run.rows = sum(r.rows for r in results)
            run.notes = [n for r in results for n in r.notes][:20]
            run.status = "ok" if any(r.status == "loaded" for r in results) else "unchanged"
        except AifinopsError as error:
            run.status, run.error = "failed", str(error)
        except Exception as error:  # a source must not stop the others
            run.status, run.error = "failed", f"{type(error).__name__}: {error}"
        ok = run.error is None
        self.store.raw(
            "INSERT INTO source_state (name, kind, checkpoint_ms, last_run_ms, last_ok_ms, "
            "last_error, runs, failures, rows) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
            "checkpoint_ms = excluded.checkpoint_ms, last_run_ms = excluded.last_run_ms, "
            "last_ok_ms = coalesce(excluded.last_ok_ms, source_state.last_ok_ms), "
            "last_error = excluded.last_error, runs = source_state.runs + 1, "
            "failures = source_state.failures + excluded.failures, "
            "rows = source_state.rows + excluded.rows",
            [src.name, src.kind, checkpoint, now, now if ok else None, run.error,
             0 if ok else 1, run.rows],
        )  # fmt: skip
        return run

    def _read_source_once(
        self, src: Any, now: int, checkpoint: int | None
    ) -> tuple[list[IngestResult], int | None]:
        at = from_ms(now).isoformat()
        if src.kind == "dcgm":
            return self.ingest_dcgm([src.url], at=at, interval=src.interval or "30s",
                                    host=src.host), now  # fmt: skip
        if src.kind == "inference":
            return self.ingest_inference(
                [src.url], server=src.server, at=at, pod=src.pod, model=src.model
            ), now
        if src.kind == "opencost":
            return self.ingest_opencost([src.url]), now
        if src.kind == "slurm":
            return self.ingest_slurm([Path(src.path)]), now
        if src.kind == "nvidia-smi":
            owners = Path(src.owners) if src.owners else None
            return [self.ingest_nvidia_smi(Path(src.path), owners, src.host)], now
        if src.kind == "kubernetes":
            result = self.ingest_kubernetes_api(
                kubeconfig=src.kubeconfig, context=src.context, in_cluster=src.in_cluster
            )
            return [result], now
        if src.kind == "prometheus":
            step_ms = int(parse_duration(src.step, what="step").total_seconds() * 1000)
            back = int(parse_duration(src.backfill, what="backfill").total_seconds() * 1000)
            start = checkpoint if checkpoint is not None else now - back
            start -= start % step_ms
            end = now - now % step_ms  # whole steps only: the next run starts here
            if end <= start:
                return [], checkpoint
            window = f"{from_ms(start).isoformat()},{from_ms(end).isoformat()}"
            try:
                result = self.ingest_prometheus(src.url, window=window, step=src.step)
            except InputError as error:
                if "no dcgm-exporter GPU series" in str(error):
                    # an empty window is not a failure: move on, nothing to read twice
                    return [IngestResult("prometheus", src.url, "unchanged",
                                         notes=[str(error)])], end  # fmt: skip
                raise
            return [result], end
        raise UsageError(f"kind {src.kind!r} cannot be collected", where=f"sources.{src.name}")

    def load_fleet(self, fleet: Fleet, seed: int, progress: Progress | None = None) -> int:
        """Write a synthetic fleet (demo, tests, benchmarks) into the store."""
        store = self.store
        rows = 0
        with store.transaction():
            self._merge_nodes([n.row() for n in fleet.nodes], prefer_new=True)
            store.upsert_arrow(
                "workloads", facts.rows_table(fleet.workloads, facts.WORKLOADS), "workload_id"
            )
            store.upsert_arrow(
                "namespaces", facts.rows_table(fleet.namespaces, facts.NAMESPACES), "namespace"
            )
            node_ids = [n.node_id for n in fleet.nodes]
            store.delete_usage(node_ids, fleet.start_ms, fleet.end_ms)
            total = fleet.gpu_count()
            done = 0
            for batch in usage_batches(fleet, seed):
                rows += store.write_usage(batch)
                done = min(total, done + 64)
                if progress:
                    progress("samples", done, total)
        return rows

    def _already(self, digest: str, result: IngestResult | None = None, what: str = "") -> bool:
        """Whether this input was stored before (by its content hash); if so, and a result is
        given, it says so: the same input twice changes nothing."""
        seen = bool(self.store.raw("SELECT 1 FROM ingest_log WHERE input_hash = ?", [digest]))
        if seen and result is not None:
            result.notes.append(f"{what} ingested before; nothing changed")
        return seen

    def _log(
        self,
        digest: str,
        kind: str,
        path: str,
        node: str | None,
        start: int | None,
        end: int | None,
        rows: int,
    ) -> None:
        self.store.raw(
            "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [digest, kind, path, node, start, end, rows, self._clock().replace(tzinfo=None)],
        )

    def _merge_nodes(self, new: list[dict[str, Any]], prefer_new: bool = False) -> None:
        self._merge("nodes", "node_id", new, facts.NODES, prefer_new, keep_max=("gpu_count",))

    def _merge_workloads(self, new: list[dict[str, Any]], prefer_new: bool = False) -> None:
        self._merge(
            "workloads",
            "workload_id",
            new,
            facts.WORKLOADS,
            prefer_new,
            keep_min=("start_ms",),
            keep_max=("end_ms",),
        )

    def _merge(
        self,
        table: str,
        key: str,
        new: list[dict[str, Any]],
        schema: pa.Schema,
        prefer_new: bool,
        keep_min: tuple[str, ...] = (),
        keep_max: tuple[str, ...] = (),
    ) -> None:
        """Upsert small fact rows, keeping what another source already knew."""
        if not new:
            return
        ids = [r[key] for r in new]
        old_rows = self.store.con.to_pyarrow(
            self.store.table(table).filter(self.store.table(table)[key].isin(ids))
        ).to_pylist()
        old = {r[key]: r for r in old_rows}
        merged = []
        for row in new:
            prev = old.get(row[key])
            if prev is None:
                merged.append(row)
                continue
            prev_labels = dict(prev.get("labels") or [])
            out = dict(prev)
            # widening an interval only makes sense for rows of the same source; a pod's own
            # start and end (Kubernetes) win over when its processes were seen on the GPU
            same_source = prev.get("source") == row.get("source")
            for name, value in row.items():
                if name == "labels":
                    continue
                if value is None:
                    continue
                if same_source and name in keep_min and prev.get(name) is not None:
                    out[name] = min(prev[name], value)
                elif same_source and name in keep_max and prev.get(name) is not None:
                    out[name] = max(prev[name], value)
                elif prefer_new or prev.get(name) is None:
                    out[name] = value
            labels = (
                {**prev_labels, **(row.get("labels") or {})}
                if prefer_new
                else {**(row.get("labels") or {}), **prev_labels}
            )
            out["labels"] = labels
            merged.append(out)
        self.store.upsert_arrow(table, facts.rows_table(merged, schema), key)

    # -- prices -----------------------------------------------------------------------
    def node_prices(
        self, bill_rules: tuple[NodeRule, ...] = ()
    ) -> tuple[list[NodePrice], pa.Table]:
        """Every node's price; `bill_rules` (from reconciliation) come first."""
        nodes = self.store.con.to_pyarrow(self.store.table("nodes"))
        prices = []
        extra: tuple[NodeRule, ...] = bill_rules
        csv_path = self.settings.prices.custom_pricing_csv
        if csv_path:
            rules, self.price_notes = read_custom_pricing(Path(csv_path))
            extra += tuple(rules)
        watts: dict[str, Decimal] = {}
        if self.settings.prices.on_prem:
            watts = self.measured_watts()
        overrides = self.settings.prices.overrides(extra, watts)
        rates = self.settings.prices.rates()
        for row in nodes.to_pylist():
            fact = NodeFacts(
                node_id=row["node_id"],
                instance_type=row["instance_type"],
                gpu_model=row["gpu_model"],
                gpu_count=row["gpu_count"] or 0,
                cpu_cores=_dec(row["cpu_cores"]),
                memory_gib=_dec(row["memory_gib"]),
                provider=row["provider"],
                region=row["region"],
                capacity_type=row["capacity_type"],
                labels=dict(row["labels"] or {}),
                resource_id=row["resource_id"],
            )
            prices.append(resolve_node_price(fact, self.catalog, overrides, rates))
        return prices, nodes

    # -- price catalog ----------------------------------------------------------------
    def price_offers(
        self,
        *,
        gpu: str | None = None,
        instance_type: str | None = None,
        provider: str | None = None,
        region: str | None = None,
        spot: bool = False,
    ) -> list[dict[str, Any]]:
        """Catalog offers matching the filters, cheapest per GPU-hour first (spot prices
        with `spot`; offers without one are left out then)."""
        out = []
        for o in self.catalog.offers:
            if gpu and not same_gpu(o.gpu_model, gpu):
                continue
            if instance_type and o.instance_type.lower() != instance_type.lower():
                continue
            if provider and o.provider.lower() != provider.lower():
                continue
            if region and (o.region or "").lower() != region.lower():
                continue
            hourly = o.spot_hourly if spot else o.on_demand_hourly
            if hourly is None:
                continue
            gpus = max(o.gpu_count, 1)
            out.append(
                {
                    "provider": o.provider,
                    "region": o.region,
                    "instance_type": o.instance_type or None,
                    "gpu_model": o.gpu_model,
                    "gpu_count": o.gpu_count,
                    "vcpus": float(o.vcpus) if o.vcpus else None,
                    "memory_gib": float(o.memory_gib) if o.memory_gib else None,
                    "on_demand_hourly": float(o.on_demand_hourly),
                    "spot_hourly": float(o.spot_hourly) if o.spot_hourly is not None else None,
                    "commit_1y_hourly": _f(o.commit_1y_hourly),
                    "commit_3y_hourly": _f(o.commit_3y_hourly),
                    "per_gpu_hourly": float(hourly / gpus),
                    "source": o.source,
                    "as_of": o.as_of,
                }
            )
        out.sort(key=lambda r: (r["per_gpu_hourly"], r["provider"], r["instance_type"] or ""))
        return out

    def missing_prices(self) -> list[dict[str, Any]]:
        """Nodes in the store that no price covers, grouped by what would price them."""
        prices, nodes = self.node_prices()
        facts_of = {r["node_id"]: r for r in nodes.to_pylist()}
        groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        for p in prices:
            if p.priced:
                continue
            n = facts_of[p.node_id]
            key = (n["instance_type"], n["gpu_model"])
            g = groups.setdefault(
                key,
                {"instance_type": n["instance_type"], "gpu_model": n["gpu_model"], "nodes": [],
                 "reason": p.reason},
            )  # fmt: skip
            g["nodes"].append(p.node_id)
        out = []
        for g in groups.values():
            if g["instance_type"]:
                g["config"] = (
                    f'prices: {{instance_types: {{"{g["instance_type"]}": <USD per node-hour>}}}}'
                )
            elif g["gpu_model"]:
                g["config"] = f'prices: {{gpu_models: {{"{g["gpu_model"]}": <USD per GPU-hour>}}}}'
            else:
                g["config"] = "ingest the node's Kubernetes object or name its GPU model"
            out.append(g)
        return sorted(
            out,
            key=lambda g: (
                g["instance_type"] is None,
                g["instance_type"] or "",
                g["gpu_model"] or "",
            ),
        )

    def measured_watts(self) -> dict[str, Decimal]:
        """Average power per GPU of each node, from its energy counter (all readings)."""
        per_node: dict[str, list[tuple[float, int]]] = {}
        for r in energy_increases(self.store).to_pylist():
            if r["span_ms"]:
                per_node.setdefault(r["node_id"], []).append((r["energy_mj"], r["span_ms"]))
        out = {}
        for node, parts in per_node.items():
            mj = sum(p[0] for p in parts)
            ms = sum(p[1] for p in parts) / len(parts)  # per GPU: the average span
            out[node] = Decimal(str(round(mj / ms / len(parts), 6))) if ms else Decimal(0)
        return out

    def energy(self, *, window: str | None = None, last: str | None = None) -> list[dict[str, Any]]:
        """Energy per node in the window, from the GPUs' energy counters, and its power cost
        where an on-prem model prices the node's power ($/kWh x PUE)."""
        win = self.resolve_window(window, last)
        nodes = self.store.con.to_pyarrow(self.store.table("nodes"))
        facts_of = {r["node_id"]: r for r in nodes.to_pylist()}
        models = self.settings.prices.overrides().on_prem
        rows: dict[str, dict[str, Any]] = {}
        for r in energy_increases(self.store, win.start_ms, win.end_ms).to_pylist():
            row = rows.setdefault(
                r["node_id"],
                {"node": r["node_id"], "gpus": 0, "energy_kwh": 0.0, "power_cost": None},
            )
            row["gpus"] += 1
            row["energy_kwh"] += r["energy_mj"] / 3.6e9  # mJ -> kWh
        for node, row in rows.items():
            f = facts_of.get(node)
            if f is None:
                continue
            fact = NodeFacts(node_id=node, gpu_model=f["gpu_model"], labels=dict(f["labels"] or {}))
            model = next((m for m in models if m.applies(fact)), None)
            if model is not None:
                kwh = Decimal(str(row["energy_kwh"]))
                row["power_cost"] = float(kwh * model.power_price_kwh * model.pue)
        return sorted(rows.values(), key=lambda r: r["node"])

    # -- cost -------------------------------------------------------------------------
    def data_extent(self) -> tuple[int, int] | None:
        rows = self.store.raw("SELECT min(ts_ms), max(ts_ms) FROM gpu_usage")
        row = rows[0] if rows else None
        if not row or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def resolve_window(self, window: str | None, last: str | None) -> Window:
        if window and last:
            raise UsageError("give --window or --last, not both", where="--window/--last")
        if window:
            return Window.parse(window)
        if last:
            return Window.last(parse_duration(last, what="--last"), self._clock())
        extent = self.data_extent()
        if extent is None:
            raise UsageError(
                "the store holds no GPU samples yet",
                where=self.settings.db,
                hint="ingest some (aifinops ingest nvidia-smi DIR) or run `aifinops demo`",
            )
        end = align_up(from_ms(extent[1] + 1), timedelta(hours=1))
        return Window(end - timedelta(days=7), end)

    def cost(
        self,
        *,
        window: str | None = None,
        last: str | None = None,
        step: str | None = None,
        by: Sequence[str] = ("team",),
        idle: IdlePolicy | str | None = None,
        shared_gpu: SharedGpuPolicy | str | None = None,
        team: str | None = None,
        unit: str | None = None,
        source: str = "telemetry",
        node_buckets: bool = False,
        bill_rules: tuple[NodeRule, ...] = (),
    ) -> CostReport:
        if source not in ("telemetry", "opencost"):
            raise UsageError(
                f"unknown cost source {source!r}", where="--source", hint="telemetry, opencost"
            )
        if source == "opencost" and not window and not last:
            found = self.store.raw("SELECT min(start_ms), max(end_ms) FROM external_allocations")[0]
            if found[0] is None:
                raise UsageError("no OpenCost allocations imported", where="--source opencost",
                                 hint="aifinops ingest opencost FILE|URL")  # fmt: skip
            window = f"{from_ms(found[0]).isoformat()},{from_ms(found[1]).isoformat()}"
        win = self.resolve_window(window, last)
        dims = tuple(normalise_dimension(d) for d in by if d.strip())
        if unit is not None:
            if unit not in ("tokens", "requests"):
                raise UsageError(f"unknown unit {unit!r}", where="--unit", hint="tokens, requests")
            if "model" not in dims:
                raise UsageError("unit costs are per model", where="--unit", hint="add --by model")
            if step is not None:
                raise UsageError("unit costs are for the whole window", where="--unit/--step")
        for d in dims:
            if d not in ALL_DIMENSIONS:
                raise UsageError(
                    f"cannot group by {d!r}",
                    where="--by",
                    hint="choose from " + ", ".join(x.replace("_", "-") for x in ALL_DIMENSIONS),
                )
        if len(set(dims)) != len(dims):
            raise UsageError("a dimension is named twice", where="--by")
        alloc = self.settings.allocation
        idle_p = IdlePolicy(idle or alloc.idle)
        shared_p = SharedGpuPolicy(shared_gpu or alloc.shared_gpu)
        step_td = parse_duration(step or alloc.step, what="--step")
        step_ms = int(step_td.total_seconds() * 1000)
        if step_ms < 60_000:
            raise UsageError("the step must be at least 1m", where="--step")
        if source == "opencost":
            if unit is not None or step is not None:
                raise UsageError("--unit and --step need telemetry", where="--source opencost")
            oc_rows, asset, oc_notes = self._cost_from_allocations(win, dims, team)
            oc_rows.sort(key=lambda r: (any(r.is_bucket(b) for b in BUCKETS), -r.total_cost))
            return CostReport(
                win, None, dims, idle_p, shared_p, asset, oc_rows, [],
                self.settings.currency, oc_notes,
            )  # fmt: skip
        prices, nodes = self.node_prices(bill_rules)
        query = AllocationQuery(
            win.start_ms,
            win.end_ms,
            step_ms,
            dims,
            shared_p,
            idle_p,
            per_step=step is not None,
            team=team,
            node_buckets=node_buckets,
        )
        result = allocate(
            self.store, query, price_table(prices, nodes), self.settings.attribution.rules()
        )
        rows = [self._cost_row(r, dims, step_ms, win) for r in result.rows.to_pylist()]
        rows = [r for r in rows if r.gpu_hours or r.total_cost or r.idle_cost]
        if unit is not None:
            rows = self._with_units(rows, win)
        rows.sort(
            key=lambda r: (
                r.start or "",
                any(r.is_bucket(b) for b in BUCKETS),
                -r.total_cost,
                tuple(r.key.values()),
            )
        )
        by_node = {r["node_id"]: r for r in nodes.to_pylist()}
        price_of = {p.node_id: p for p in prices}
        unpriced = [
            UnpricedNode(
                node=u["node_id"],
                instance_type=by_node[u["node_id"]]["instance_type"],
                gpu_model=by_node[u["node_id"]]["gpu_model"],
                gpu_count=by_node[u["node_id"]]["gpu_count"] or 0,
                gpu_hours=hours_from_ms(u["gpu_ms"]),
                reason=price_of[u["node_id"]].reason,
            )
            for u in result.unpriced.to_pylist()
            if u["node_id"] in by_node
        ]
        unpriced.sort(key=lambda u: u.node)
        notes = list(self.price_notes)
        if team is not None:
            notes.append(f"rows limited to team {team!r}; asset_cost covers the whole fleet")
        return CostReport(
            win,
            step if step else None,
            dims,
            idle_p,
            shared_p,
            dollars_from_units(result.asset_units),
            rows,
            unpriced,
            self.settings.currency,
            notes,
        )

    def _with_units(self, rows: list[CostRow], win: Window) -> list[CostRow]:
        counts: dict[str, dict[str, float]] = {}
        for r in counter_increases(self.store, win.start_ms, win.end_ms).to_pylist():
            counts.setdefault(r["model"], {})[r["metric"]] = float(r["increase"] or 0.0)
        out = []
        for row in rows:
            model = row.key.get("model")
            if model in counts and not any(row.is_bucket(b) for b in BUCKETS):
                row = replace(row, units=UnitCounts(**counts[model]))
            out.append(row)
        return out

    @staticmethod
    def _cost_row(r: dict[str, Any], dims: tuple[str, ...], step_ms: int, win: Window) -> CostRow:
        start = end = None
        if "step" in r:
            start = from_ms(r["step"]).isoformat().replace("+00:00", "Z")
            end = from_ms(min(r["step"] + step_ms, win.end_ms)).isoformat().replace("+00:00", "Z")
        signals = tuple(sorted(s for s in (r.get("signals") or []) if s))
        return CostRow(
            key={d: r[d] for d in dims},
            gpu_hours=hours_from_ms(r["gpu_ms"]),
            gpu_cost=dollars_from_units(r["gpu_units"]),
            cpu_cost=dollars_from_units(r["cpu_units"]),
            ram_cost=dollars_from_units(r["ram_units"]),
            idle_cost=dollars_from_units(r["idle_units"]),
            waste_cost=dollars_from_units(r["waste_units"]),
            used_gpu_hours=hours_from_ms(r["used_ms"]),
            efficiency_signals=signals,
            start=start,
            end=end,
        )


def _parts(start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, end) cut into consecutive parts of `size` (aligned to it)."""
    a = start
    while a < end:
        b = min(a - a % size + size, end)
        yield a, b
        a = b


def _merge_gaps(gaps: list[prometheus.Gap]) -> list[prometheus.Gap]:
    """Adjacent gaps of the same kind, as one."""
    out: list[prometheus.Gap] = []
    for g in sorted(gaps, key=lambda g: (g.what, g.start_ms)):
        if out and out[-1].what == g.what and out[-1].end_ms >= g.start_ms:
            out[-1] = prometheus.Gap(out[-1].start_ms, max(out[-1].end_ms, g.end_ms), g.what)
        else:
            out.append(g)
    return sorted(out, key=lambda g: g.start_ms)


def source_kinds() -> list[source_registry.SourceKind]:
    """The kinds of source `collect` can run (the registry, for the faces)."""
    return list(source_registry.KINDS.values())


def _iso(ms: int | None) -> str | None:
    return from_ms(ms).isoformat().replace("+00:00", "Z") if ms is not None else None


def _offer_dict(o: CatalogOffer) -> dict[str, Any]:
    out = {}
    for name in CatalogOffer.__dataclass_fields__:
        value = getattr(o, name)
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


def _offer_from(d: dict[str, Any]) -> CatalogOffer:
    money = {"vcpus", "memory_gib", "on_demand_hourly", "spot_hourly", "gpu_component_hourly",
             "commit_1y_hourly", "commit_3y_hourly", "per_gpu_hourly"}  # fmt: skip
    return CatalogOffer(
        **{k: (Decimal(v) if k in money and v is not None else v) for k, v in d.items()}
    )


def _f(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _digest(paths: Sequence[Path], extra: str = "") -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(extra.encode())
    return h.hexdigest()


__all__ = ["ZERO", "IngestResult", "Service"]
