"""Ingest: run a source's reads and write their facts, with the bookkeeping in one place —
the content digest (the same input twice changes nothing), the staging of long reads, one
transaction per input, and the ingest log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from aifinops.app.context import AppContext
from aifinops.core.windows import from_ms
from aifinops.sources.base import Facts, ReadContext, Reading, Source, SourceConfig
from aifinops.store import facts as stored
from aifinops.store import state
from aifinops.tables import GPU_ENERGY, GPU_USAGE, rows_table

EARLIEST_MS = 946_684_800_000  # 2000-01-01: no GPU sample is older
DAY_MS = 86_400_000


@dataclass
class IngestResult:
    source: str
    path: str
    status: str  # loaded | unchanged | failed
    rows: int = 0
    node: str | None = None
    workloads: int = 0
    window: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)


class Ingest:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def read_context(
        self, *, at_ms: int | None = None, checkpoint_ms: int | None = None, progress: Any = None
    ) -> ReadContext:
        rules = self.ctx.settings.attribution.rules()
        return ReadContext(
            now_ms=self.ctx.now_ms(),
            at_ms=at_ms,
            checkpoint_ms=checkpoint_ms,
            label_keys=tuple(k for keys in rules.label_keys.values() for k in keys),
            clock=self.ctx.clock,
            sleep=self.ctx.sleep,
            progress=progress,
        )

    def run(self, source: Source, config: SourceConfig, rc: ReadContext) -> list[IngestResult]:
        """Every reading of one read of a source, each stored (or found stored) in turn."""
        return [self.store(reading) for reading in source.read(config, rc)]

    # -- bookkeeping --------------------------------------------------------------------
    def seen(self, digest: str, result: IngestResult | None = None, what: str = "") -> bool:
        """Whether this input was stored before (by its content digest); if so, and a
        result is given, it says so."""
        found = state.seen(self.ctx.store, digest)
        if found and result is not None:
            result.notes.append(f"{what} ingested before; nothing changed")
        return found

    def log(self, entry: state.LoggedInput) -> None:
        state.log_input(self.ctx.store, entry, self.ctx.clock())

    # -- writing ------------------------------------------------------------------------
    def store(self, reading: Reading) -> IngestResult:
        """Write one reading: all its parts in one transaction (long reads staged first),
        or, for a watch, each part as it comes."""
        result = IngestResult(reading.kind, reading.what, "unchanged", window=reading.window,
                              notes=list(reading.notes))  # fmt: skip
        if reading.digest and self.seen(reading.digest, result, reading.seen_note):
            return result
        if reading.commit_each:  # a watch: each batch of changes is stored as it comes
            workloads: set[str] = set()
            for part in reading.parts:
                with self.ctx.store.transaction():
                    self.write(part)
                result.rows += part.rows or 0
                workloads |= {w["workload_id"] for w in part.workloads}
                result.notes += part.notes
                result.workloads, result.status = len(workloads), "loaded"
            return result
        return self._staged(reading, result)

    def _staged(self, reading: Reading, result: IngestResult) -> IngestResult:
        store = self.ctx.store
        usage, energy = store.stage("usage", GPU_USAGE), store.stage("energy", GPU_ENERGY)
        try:
            whole, said, rows = Facts(), [*result.notes], 0
            any_part = False
            low, high, dated = EARLIEST_MS, self.ctx.now_ms() + DAY_MS, _Dated()
            for part in reading.parts:
                any_part = True
                if part.usage is not None:
                    part.usage = dated.keep(part.usage, low, high)
                    rows += store.stage_append(usage, part.usage)
                if part.energy:
                    store.stage_append(energy, rows_table(part.energy, GPU_ENERGY))
                _gather(whole, part)
                result.notes += [n for n in part.notes if n not in said]
                said += part.notes
            if not any_part:  # nothing in it (an empty segment): remember it all the same
                if reading.digest and reading.log:
                    self.log(state.LoggedInput(reading.digest, reading.kind, reading.what))
                return result
            whole.usage = None
            if dated.dropped:  # never store them, nor let them widen what is replaced
                result.notes.append(dated.note(low, high))
                if whole.span is not None and dated.first is not None:
                    whole.span = (max(whole.span[0], dated.first),
                                  min(whole.span[1], dated.last + 1))  # fmt: skip
            digest = reading.digest or whole.digest
            nodes = stored.usage_nodes(store, usage) if rows else []
            result.rows = whole.rows if whole.rows is not None else rows
            result.node = ", ".join(nodes) or None
            result.workloads = len({w["workload_id"] for w in whole.workloads})
            result.window = reading.window or whole.span
            if not reading.digest and digest and self.seen(digest, result, reading.seen_note):
                return result
            with store.transaction():
                self.write(whole, usage=usage if rows else None, energy=energy)
                result.notes += self._claim(whole.claims)
                if digest and reading.log:
                    span = result.window or (None, None)
                    self.log(state.LoggedInput(digest, reading.kind, reading.what,
                                               ",".join(nodes)[:200] or None, span[0], span[1],
                                               result.rows))  # fmt: skip
            result.status = "loaded"
            return result
        finally:
            store.drop_stage(usage)
            store.drop_stage(energy)

    def write(self, facts: Facts, *, usage: str | None = None, energy: str | None = None) -> None:
        """The one write policy for facts (call inside a transaction): samples and energy
        replace their nodes' in the span; nodes and workloads merge; counters and imported
        allocations replace what the same source said of the same window."""
        store = self.ctx.store
        span = facts.span or (0, 0)
        if usage is not None:
            stored.replace_usage(store, usage, *span)
        elif facts.usage is not None and facts.usage.num_rows:
            stored.replace_usage(store, facts.usage, *span)
        stored.merge_nodes(store, facts.nodes, prefer_new=facts.prefer_new)
        stored.merge_workloads(store, facts.workloads, prefer_new=facts.prefer_new)
        stored.upsert_namespaces(store, facts.namespaces)
        if energy is not None:
            stored.replace_energy(store, energy, *span)
        elif facts.energy:
            stored.replace_energy(store, facts.energy, *span)
        if facts.counters or facts.counters_span:
            stored.replace_counters(store, facts.counters, facts.counters_span)
        if facts.allocations is not None:
            stored.replace_allocations(store, facts.allocations)

    def load_generated(self, fleet: Any, batches: Iterable[pa.Table], progress: Any = None) -> int:
        """Write a generated fleet (nodes, workloads, namespaces, sample batches) as given,
        in one transaction, replacing its nodes' samples over its span."""
        store, rows, done = self.ctx.store, 0, 0
        total = fleet.gpu_count()
        with store.transaction():
            stored.merge_nodes(store, [n.row() for n in fleet.nodes], prefer_new=True)
            stored.replace_workloads(store, fleet.workloads)
            stored.upsert_namespaces(store, fleet.namespaces)
            store.delete_usage([n.node_id for n in fleet.nodes], fleet.start_ms, fleet.end_ms)
            for batch in batches:
                rows += store.write_usage(batch)
                done = min(total, done + 64)
                if progress:
                    progress("samples", done, total)
        return rows

    def _claim(self, claims: Sequence[Any]) -> list[str]:
        """Samples no telemetry tied to an owner go to the job that held the whole node."""
        if not claims:
            return []
        gpus = stored.node_column(self.ctx.store, "gpu_count")
        claimed = partial = 0
        for c in claims:
            have = gpus.get(c.node) or 0
            if have and c.gpus >= have:
                claimed += stored.claim_unowned(self.ctx.store, c.node, c.workload, c.start_ms,
                                                c.end_ms)  # fmt: skip
            elif have:
                partial += 1
        notes = []
        if claimed:
            notes.append(f"{claimed} unowned GPU sample rows given to their jobs")
        if partial:
            notes.append(
                f"{partial} job-node(s) hold part of a node's GPUs: their GPU time comes "
                "from telemetry that names the job (dcgm-exporter hpc_job, the agent)"
            )
        return notes


class _Dated:
    """Samples dated before 2000 or more than a day after now (a wrong clock, a corrupt
    line): left out of what is stored, and counted for the note."""

    def __init__(self) -> None:
        self.dropped = 0
        self.example: int | None = None
        self.first: int | None = None  # the kept samples' extent
        self.last: int | None = None

    def keep(self, usage: pa.Table, low: int, high: int) -> pa.Table:
        import pyarrow.compute as pc

        if usage.num_rows == 0:
            return usage
        ts = usage.column("ts_ms")
        ok = pc.and_(pc.greater_equal(ts, low), pc.less(ts, high))
        kept = usage.filter(ok) if not pc.all(ok).as_py() else usage
        if kept.num_rows < usage.num_rows:
            self.dropped += usage.num_rows - kept.num_rows
            if self.example is None:
                self.example = usage.filter(pc.invert(ok)).column("ts_ms")[0].as_py()
        if kept.num_rows:
            lo, hi = pc.min_max(kept.column("ts_ms")).values()
            self.first = lo.as_py() if self.first is None else min(self.first, lo.as_py())
            self.last = hi.as_py() if self.last is None else max(self.last, hi.as_py())
        return kept

    def note(self, low: int, high: int) -> str:
        when = "?" if self.example is None else from_ms(self.example).isoformat()
        return (f"{self.dropped} sample row(s) dated outside {from_ms(low).date()} .. "
                f"{from_ms(high).date()} (e.g. {when}) were not stored: a wrong clock or a corrupt "
                "line?")  # fmt: skip


def _gather(whole: Facts, part: Facts) -> None:
    """Add a part's small facts to the reading's (its tables are staged apart)."""
    whole.nodes += part.nodes
    whole.workloads += part.workloads
    whole.namespaces += part.namespaces
    whole.counters += part.counters
    whole.claims += part.claims
    whole.prefer_new = whole.prefer_new or part.prefer_new
    if part.span is not None:
        s = whole.span
        whole.span = part.span if s is None else (min(s[0], part.span[0]), max(s[1], part.span[1]))
    for name in ("counters_span", "allocations", "rows", "digest"):
        if getattr(part, name) is not None:
            setattr(whole, name, getattr(part, name))


def results_rows(results: Iterable[IngestResult]) -> int:
    return sum(r.rows for r in results)
