"""The inventory kinds as sources: Kubernetes (dumps, or the API with a watch), Slurm
accounting and OpenCost allocations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from aifinops.core.windows import iso_ms
from aifinops.errors import InputError
from aifinops.sources.base import Claim, Facts, ReadContext, Reading, SourceConfig, register
from aifinops.sources.inputs import file_digest, read_scrape, text_digest
from aifinops.sources.inventory.kubernetes import KubeObjects


class KubernetesConfig(SourceConfig):
    kind: Literal["kubernetes"] = "kubernetes"
    path: str | None = None  # a `kubectl get -o json|yaml` dump; none: the API
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    watch: float = 0.0  # after listing, follow changes for this many seconds


def _kube_facts(objects: KubeObjects, rows: int | None = None) -> Facts:
    return Facts(nodes=objects.nodes, workloads=objects.pods, namespaces=objects.namespaces,
                 prefer_new=True, rows=rows)  # fmt: skip


@register
class KubernetesSource:
    """Nodes, pods and namespaces: from a dump file, or listed from the API and then, for
    `watch` seconds, followed from the lists' resource versions (an expired watch lists
    again). Time is the context's clock, so a test can run the watch on its own clock."""

    kind: ClassVar[str] = "kubernetes"
    mode: ClassVar[str] = "snapshot"
    description: ClassVar[str] = "Kubernetes API: nodes, pods, namespaces (or a kubectl dump)"
    default_interval: ClassVar[str] = "10m"
    config: ClassVar[type[SourceConfig]] = KubernetesConfig

    def __init__(self, api: Any = None):
        self.api = api  # a KubeApi-like client (tests); default: the official client

    def read(self, config: KubernetesConfig, ctx: ReadContext) -> Iterator[Reading]:
        if config.path is not None:
            yield self._dump(Path(config.path))
            return
        from aifinops.sources.inventory import kube_api

        client = self.api or kube_api.KubeApi(
            config.kubeconfig, config.context, in_cluster=config.in_cluster
        )
        yield Reading(self.kind, client.server, self._follow(client, config.watch, ctx),
                      commit_each=True, log=False)  # fmt: skip

    def _dump(self, path: Path) -> Reading:
        from aifinops.sources.inventory.kubernetes import read_dump

        def parts() -> Iterator[Facts]:
            objects = read_dump(path)
            facts = _kube_facts(objects, len(objects.nodes) + len(objects.pods)
                                + len(objects.namespaces))  # fmt: skip
            facts.notes = [f"{len(objects.nodes)} nodes, {len(objects.pods)} pods, "
                           f"{len(objects.namespaces)} namespaces"]  # fmt: skip
            if objects.skipped:
                facts.notes.append("skipped kinds: " + ", ".join(
                    f"{k} ({v})" for k, v in sorted(objects.skipped.items())))  # fmt: skip
            yield facts

        digest = file_digest([path], extra="kubernetes")
        return Reading(self.kind, str(path), parts(), digest, "this file was")

    def _follow(self, client: Any, watch_seconds: float, ctx: ReadContext) -> Iterator[Facts]:
        from aifinops.sources.inventory import kube_api

        listing = client.list_all()
        counts = {k: len(v) for k, v in listing.raw.items()}
        first = _kube_facts(listing.objects, sum(counts.values()))
        first.notes.append(
            f"listed {counts.get('Node', 0)} nodes, {counts.get('Pod', 0)} pods, "
            f"{counts.get('Namespace', 0)} namespaces"
        )
        yield first
        versions = dict(listing.versions)
        events = relists = 0

        def now() -> float:
            return ctx.clock().timestamp()

        deadline = now() + watch_seconds
        while watch_seconds > 0 and now() < deadline:
            before = events
            for kind in kube_api.KINDS:
                left = deadline - now()
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
                    yield _kube_facts(kube_api.objects_from({"items": items}, client.server), 0)
                if changed:
                    yield self._events(changed, ctx)
                events += len(changed)
            if events == before and ctx.sleep is not None:
                ctx.sleep(0.2)  # a server that closes watches at once is not busy-polled
        notes = []
        if watch_seconds > 0:
            notes.append(
                f"watched {watch_seconds:g} s: {events} changes"
                + (f", {relists} re-list(s) after an expired watch" if relists else "")
            )
        notes.append("resource versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        yield Facts(notes=notes, rows=0)

    @staticmethod
    def _events(events: list[tuple[str, dict[str, Any]]], ctx: ReadContext) -> Facts:
        """Added and modified objects as they are now; a deleted pod ends at its deletion."""
        from aifinops.sources.inventory import kube_api

        now_ms = int(ctx.clock().timestamp() * 1000)
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
        return _kube_facts(objects, 0)


class SlurmConfig(SourceConfig):
    kind: Literal["slurm"] = "slurm"
    path: str  # `sacct --json` or `--parsable2` output
    timezone: str = "UTC"  # of --parsable2 Start/End


@register
class SlurmSource:
    """Slurm accounting: jobs become workloads per node; a job that held all of a node's
    GPUs claims the node's samples that no telemetry tied to an owner."""

    kind: ClassVar[str] = "slurm"
    mode: ClassVar[str] = "snapshot"
    description: ClassVar[str] = "sacct --json or --parsable2 output written to a file"
    default_interval: ClassVar[str] = "15m"
    config: ClassVar[type[SourceConfig]] = SlurmConfig

    def read(self, config: SlurmConfig, ctx: ReadContext) -> Iterator[Reading]:
        from aifinops.sources.inventory import slurm

        path = Path(config.path)

        def parts() -> Iterator[Facts]:
            acct = slurm.read_sacct(path, config.timezone)
            rows = [w for job in acct.jobs for w in job.workloads()]
            claims = [
                Claim(node, job.workload_id(node), job.gpus / max(len(job.nodes), 1),
                      job.start_ms, job.end_ms)
                for job in acct.jobs if job.gpus and job.start_ms is not None
                for node in job.nodes
            ]  # fmt: skip
            steps = sum(j.steps for j in acct.jobs)
            notes = [*acct.problems, f"{len(acct.jobs)} jobs ({acct.format}), {steps} steps, "
                     f"{sum(1 for j in acct.jobs if j.gpus)} with GPUs"]  # fmt: skip
            yield Facts(workloads=rows, prefer_new=True, claims=claims, notes=notes,
                        rows=len(rows))  # fmt: skip

        digest = file_digest([path], extra=f"slurm|{config.timezone}")
        yield Reading(self.kind, str(path), parts(), digest, "this file was")


class OpenCostConfig(SourceConfig):
    kind: Literal["opencost"] = "opencost"
    url: str  # an /allocation/compute URL or a saved response


@register
class OpenCostSource:
    """OpenCost `/allocation/compute` responses: an allocation imported again (same name
    and window) replaces the earlier one; its pods become workloads."""

    kind: ClassVar[str] = "opencost"
    mode: ClassVar[str] = "snapshot"
    description: ClassVar[str] = "OpenCost /allocation/compute"
    default_interval: ClassVar[str] = "1h"
    config: ClassVar[type[SourceConfig]] = OpenCostConfig

    def read(self, config: OpenCostConfig, ctx: ReadContext) -> Iterator[Reading]:
        from aifinops.sources.facts import ALLOCATIONS, rows_table
        from aifinops.sources.inventory import opencost

        src = config.url
        text, _ = read_scrape(src, None, ctx.now_ms)

        def parts() -> Iterator[Facts]:
            rows = opencost.read_allocations(text, src, ctx.label_keys)
            if not rows:
                raise InputError("no allocations in this response", where=src)
            pods: dict[str, dict[str, Any]] = {}
            for r in rows:
                if not (r["pod"] and r["namespace"]) or r["name"].startswith("__"):
                    continue
                pod = {"workload_id": f"{r['namespace']}/{r['pod']}", "kind": "pod",
                       "namespace": r["namespace"], "name": r["pod"], "node_id": r["node_id"],
                       "controller": r["controller"], "start_ms": r["start_ms"],
                       "end_ms": r["end_ms"], "labels": r["labels"],
                       "source": "opencost"}  # fmt: skip
                seen = pods.setdefault(pod["workload_id"], pod)
                seen["start_ms"] = min(seen["start_ms"], pod["start_ms"])
                seen["end_ms"] = max(seen["end_ms"], pod["end_ms"])
            span = (min(r["start_ms"] for r in rows), max(r["end_ms"] for r in rows))
            yield Facts(allocations=rows_table(rows, ALLOCATIONS), workloads=list(pods.values()),
                        span=span, rows=len(rows))  # fmt: skip

        yield Reading(self.kind, src, parts(), text_digest("opencost|", text), "this response was")
