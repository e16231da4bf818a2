"""Collect: run the configured sources on their intervals, each from its checkpoint, with
its health kept in the store; and the node agent, which ships what it samples here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifinops.app.ingest import Ingest, IngestResult
from aifinops.core.windows import iso_z, parse_duration
from aifinops.errors import AifinopsError, UsageError
from aifinops.sources import registry
from aifinops.sources.base import EmptyRead, SourceConfig
from aifinops.store import facts as stored
from aifinops.store import state


@dataclass
class SourceRun:
    name: str
    kind: str
    at_ms: int
    status: str = "failed"  # ok | unchanged | failed
    rows: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class Collect:
    def __init__(self, ingest: Ingest):
        self.ingest, self.ctx = ingest, ingest.ctx

    def run(
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
        sources = [s for s in self.ctx.settings.sources if not only or s.name in only]
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
            now = self.ctx.now_ms()
            runs, next_due = self.run_due(sources, once=once, report=report)
            done += runs
            if once or (seconds is not None and time.monotonic() - started >= seconds):
                return done
            wait = max(0.5, ((next_due or now) - self.ctx.now_ms()) / 1000)
            if seconds is not None:
                wait = min(wait, max(0.0, seconds - (time.monotonic() - started)))
            # DuckDB lets no one read a file while a process holds it for writing: let go
            # of the store between runs, so `sources status`, `cost`... run meanwhile
            self.ctx.close()
            pause(wait)

    def run_due(
        self,
        sources: Sequence[SourceConfig] | None = None,
        *,
        once: bool = False,
        report: Callable[[str, SourceRun], None] | None = None,
    ) -> tuple[list[SourceRun], int | None]:
        """One pass: run each source whose interval has passed since its last run (every
        source, `once`); the runs, and when the next source is due (ms)."""
        now = self.ctx.now_ms()
        states = state.source_states(self.ctx.store)
        done: list[SourceRun] = []
        next_due = None
        for src in self.ctx.settings.sources if sources is None else sources:
            every = interval_ms(src)
            last = (states.get(src.name) or {}).get("last_run_ms")
            if once or last is None or now >= last + every:
                run = self.run_one(src, now, states.get(src.name) or {})
                done.append(run)
                if report:
                    report(src.name, run)
                last = now
            next_due = last + every if next_due is None else min(next_due, last + every)
        return done, next_due

    def due(self) -> list[str]:
        """The configured sources whose interval has passed since their last run (a read:
        the server asks before it opens the store for writing)."""
        now = self.ctx.now_ms()
        states = state.source_states(self.ctx.store)
        return [
            s.name
            for s in self.ctx.settings.sources
            if (last := (states.get(s.name) or {}).get("last_run_ms")) is None
            or now >= last + interval_ms(s)
        ]

    def run_one(self, src: SourceConfig, now: int, last: dict[str, Any]) -> SourceRun:
        """One run of one source; an error is recorded, never raised past the loop."""
        run = SourceRun(src.name, src.kind, now)
        checkpoint = last.get("checkpoint_ms")
        source = registry.kind(src.kind)()
        rc = self.ingest.read_context(at_ms=now, checkpoint_ms=checkpoint)
        results: list[IngestResult] = []
        try:
            for reading in source.read(src, rc):
                try:
                    results.append(self.ingest.store(reading))
                except EmptyRead as empty:  # nothing in the window: not a failure
                    results.append(IngestResult(src.kind, reading.what, "unchanged",
                                                notes=[str(empty)]))  # fmt: skip
                if reading.checkpoint_ms is not None:  # a range read: where the next starts
                    checkpoint = reading.checkpoint_ms
            if source.mode != "range":
                checkpoint = now
            run.rows = sum(r.rows for r in results)
            run.notes = [n for r in results for n in r.notes][:20]
            run.status = "ok" if any(r.status == "loaded" for r in results) else "unchanged"
        except AifinopsError as error:
            run.status, run.error = "failed", str(error)
        except Exception as error:  # a source must not stop the others
            run.status, run.error = "failed", f"{type(error).__name__}: {error}"
        state.record_run(self.ctx.store, src.name, src.kind, at_ms=now, checkpoint_ms=checkpoint,
                         error=run.error, rows=run.rows)  # fmt: skip
        return run

    def status(self) -> list[dict[str, Any]]:
        states = state.source_states(self.ctx.store)
        now = self.ctx.now_ms()
        out = []
        for src in self.ctx.settings.sources:
            row = states.get(src.name) or {}
            last_ok = row.get("last_ok_ms")
            out.append(
                {
                    "name": src.name,
                    "kind": src.kind,
                    "interval": src.interval or registry.kind(src.kind).default_interval,
                    "last_run": iso_z(row.get("last_run_ms")),
                    "last_ok": iso_z(row.get("last_ok_ms")),
                    "checkpoint": iso_z(row.get("checkpoint_ms")),
                    "runs": row.get("runs", 0),
                    "failures": row.get("failures", 0),
                    "rows": row.get("rows", 0),
                    "last_error": row.get("last_error"),
                    "state": "never run"
                    if not row
                    else ("failing" if row.get("last_error") else "ok"),
                    # fresh: a success within twice the interval (what /ready asks)
                    "stale": last_ok is None or now - last_ok > 2 * interval_ms(src),
                }
            )
        return out

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
        ship_here: Callable[[Path], Any] | None = None,
    ) -> Any:
        """Run the node agent: sample (NVML, or a recorded stream), resolve owners, spool,
        and ship closed segments to this store (`ship_here`) or POST them to `server`."""
        import socket

        from aifinops.sources.http import post_bytes
        from aifinops.sources.telemetry import nvml

        host = host or socket.gethostname()
        every = int(parse_duration(interval, what="--interval").total_seconds() * 1000)
        sampler = nvml.ReplaySampler(replay, gpu_names) if replay else nvml.NvmlSampler()
        resolver = nvml.OwnerResolver(host, proc_root=proc_root, passwd=passwd,
                                      pods=stored.workload_uids(self.ctx.store),
                                      user_teams=user_teams)  # fmt: skip
        if server:
            target = server.rstrip("/") + "/api/v1/agent/segments"

            token = os.environ.get("AIFINOPS_TOKEN")  # from the environment, never a flag

            def ship(segment: Path) -> None:
                post_bytes(target, segment.read_bytes(), "application/x-ndjson", token=token)

        else:
            assert ship_here is not None

            def ship(segment: Path) -> None:
                ship_here(segment)

        agent = nvml.Agent(host, sampler, resolver, nvml.Spool(spool, per_segment), ship, every)
        try:
            agent.run(ticks, sleep=sleep)
        finally:
            agent.stop()
        return agent.stats


def interval_ms(src: SourceConfig) -> int:
    text = src.interval or registry.kind(src.kind).default_interval
    return int(parse_duration(text, what=f"sources.{src.name}.interval").total_seconds() * 1000)
