"""The telemetry kinds as sources: dcgm-exporter scrapes, nvidia-smi log directories and the
node agent's spool segments (Prometheus is in `prometheus_pull`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from aifinops.core.windows import parse_duration
from aifinops.errors import InputError, UsageError
from aifinops.sources.base import Facts, ReadContext, Reading, SourceConfig, register
from aifinops.sources.inputs import (
    decode_text,
    file_digest,
    read_input,
    read_scrape,
    text_digest,
)
from aifinops.sources.inventory.owners import Owner, read_owners

SKEW_MS = 300_000  # sample timestamps this far from the scrape time are reported


def duration_ms(text: str, what: str) -> int:
    ms = int(parse_duration(text, what=what).total_seconds() * 1000)
    if ms <= 0:
        raise UsageError("the interval must be positive", where=what)
    return ms


class DcgmConfig(SourceConfig):
    kind: Literal["dcgm"] = "dcgm"
    url: str  # a /metrics URL or a saved scrape
    host: str | None = None  # for series without a Hostname label


@register
class DcgmSource:
    """NVIDIA dcgm-exporter `/metrics`: each scrape is one instant standing for `interval`."""

    kind: ClassVar[str] = "dcgm"
    mode: ClassVar[str] = "instant"
    description: ClassVar[str] = "NVIDIA dcgm-exporter /metrics: GPU usage, pods, MIG, energy"
    default_interval: ClassVar[str] = "30s"
    config: ClassVar[type[SourceConfig]] = DcgmConfig

    def read(self, config: DcgmConfig, ctx: ReadContext) -> Iterator[Reading]:
        from aifinops.sources.telemetry import dcgm

        interval_ms = duration_ms(config.interval or self.default_interval, "--interval")
        src, host = config.url, config.host
        text, at_ms = read_scrape(src, ctx.at_ms, ctx.now_ms)

        def parts() -> Iterator[Facts]:
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
            if got.usage.num_rows == 0:
                raise InputError(
                    "no GPU samples in this scrape",
                    where=src,
                    hint="is it a dcgm-exporter /metrics page? " + "; ".join(got.notes[:3]),
                )
            yield Facts(usage=got.usage, span=(got.start_ms, got.end_ms), nodes=got.nodes,
                        workloads=got.workloads, energy=got.energy, notes=got.notes)  # fmt: skip

        digest = text_digest(f"dcgm|{at_ms}|{interval_ms}|{host}|", text)
        yield Reading(self.kind, src, parts(), digest, "this scrape was")


class NvidiaSmiConfig(SourceConfig):
    kind: Literal["nvidia-smi"] = "nvidia-smi"
    path: str  # a directory of logs, or one log file
    owners: str | None = None  # the process-owner CSV
    host: str | None = None  # default: the directory's name
    timezone: str = "UTC"


@register
class NvidiaSmiSource:
    """A directory of nvidia-smi logs, each process tied to its owner once, here."""

    kind: ClassVar[str] = "nvidia-smi"
    mode: ClassVar[str] = "snapshot"
    description: ClassVar[str] = "a directory of nvidia-smi logs (with an owners file)"
    default_interval: ClassVar[str] = "15m"
    config: ClassVar[type[SourceConfig]] = NvidiaSmiConfig

    def __init__(self, owners: Sequence[Owner] = ()):
        self.owners = list(owners)  # owners given in code (the demo's ground truth)

    def read(self, config: NvidiaSmiConfig, ctx: ReadContext) -> Iterator[Reading]:
        from aifinops.sources.telemetry.holders import SIGNALS, assign_holders
        from aifinops.sources.telemetry.nvidia_smi import parse_dir

        path = Path(config.path)
        if not path.exists():
            raise InputError("no such file or directory", where=str(path))
        owners_file = Path(config.owners) if config.owners else None
        host = config.host or (path.name if path.is_dir() else path.parent.name)
        log = parse_dir(path, tz=config.timezone)
        given = sorted((o.pid, o.workload, o.host or "", o.start_ms or 0, o.end_ms or 0,
                        sorted(o.labels.items())) for o in self.owners)  # fmt: skip
        digest = file_digest(
            [Path(p) for p in sorted(log.files)] + ([owners_file] if owners_file else []),
            extra=f"{host}|{config.timezone}|{given}",
        )

        def parts() -> Iterator[Facts]:
            owner_rows = self.owners + (read_owners(owners_file) if owners_file else [])
            held = assign_holders(log, host, owner_rows)
            models = sorted({m for m in held.gpus.values() if m})
            node = {"node_id": host, "gpu_model": models[0] if models else None,
                    "gpu_count": len(held.gpus), "util_signal": SIGNALS[log.device_kind or
                    "query-gpu"], "source": "nvidia-smi", "labels": {}}  # fmt: skip
            yield Facts(usage=held.usage, span=(held.start_ms, held.end_ms), nodes=[node],
                        workloads=held.workloads, energy=held.energy,
                        notes=list(held.notes))  # fmt: skip

        yield Reading(self.kind, str(path), parts(), digest, "these logs were",
                      notes=list(log.warnings))  # fmt: skip


class AgentConfig(SourceConfig):
    kind: Literal["agent"] = "agent"
    path: str  # one closed spool segment


@register
class AgentSegmentSource:
    """A closed spool segment of the node agent (it pushes them; nothing to collect)."""

    kind: ClassVar[str] = "agent"
    mode: ClassVar[str] = "push"
    description: ClassVar[str] = (
        "the node agent's segments (aifinops agent: NVML samples with owners), pushed"
    )
    default_interval: ClassVar[str] = "1m"
    config: ClassVar[type[SourceConfig]] = AgentConfig

    def read(self, config: AgentConfig, ctx: ReadContext) -> Iterator[Reading]:
        from aifinops.sources.telemetry import nvml

        path = Path(config.path)
        data = read_input(path)
        notes: list[str] = []
        records: list[dict[str, Any]] = []
        # whole lines strictly; a last line cut by a crash may end inside a character
        whole = data.rfind(b"\n") + 1
        text = decode_text(data[:whole], str(path), what="an agent segment (JSON lines)")
        text += data[whole:].decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # the last line of a segment cut by a crash: the lines before it still count
                notes.append(f"{path}:{number}: not a whole record; skipped")

        def parts() -> Iterator[Facts]:
            if not records:
                return
            got = nvml.segment_facts(records)
            yield Facts(usage=got.usage, span=(got.start_ms, got.last_ts_ms + 1),
                        nodes=got.nodes, workloads=got.workloads, energy=got.energy)  # fmt: skip

        digest = hashlib.sha256(b"agent|" + data).hexdigest()
        yield Reading(self.kind, str(path), parts(), digest, "this segment was", notes=notes)
