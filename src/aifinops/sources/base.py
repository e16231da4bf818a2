"""The one shape of a source: a typed config chosen by `kind:`, and a `read` that turns one
input (a scrape, a file, a window of a time-series API, the state of a cluster) into facts.

A source never touches the store. It reads at an instant or over a window, from the
checkpoint it is given, and returns `Reading`s; the service's ingest part decides what is
new (by content digest) and writes the facts in one transaction. Kinds register by name
(`@register`), exactly as a plugin would; `registry.kinds()` lists them.

Three ways of running, as `collect` sees them:
- `instant`: scrape now (a `/metrics` page): each run is one sample at the time of the run;
- `range`: pull a window, from the checkpoint (or `backfill` before now) up to now: after a
  restart the window starts where the last good run ended, so nothing is missed and nothing
  is read twice;
- `snapshot`: read the whole current state (inventory, accounting, allocations), which
  replaces what the same source said before;
- `push`: the data is sent to aifinops (the node agent's segments); not collected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from aifinops.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa


class SourceConfig(BaseModel):
    """What every configured source has; each kind adds its own fields (and `kind`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    kind: str
    interval: str | None = None  # default: the kind's


@dataclass(frozen=True)
class Claim:
    """Samples on `node` in [start, end) that no telemetry tied to an owner go to
    `workload`, if it held at least as many GPUs as the node has (a Slurm job)."""

    node: str
    workload: str
    gpus: float
    start_ms: int
    end_ms: int | None


@dataclass
class Facts:
    """What a read gives the store. `usage` replaces its nodes' samples in `span`; nodes and
    workloads merge with what other sources said (`prefer_new`: this source's values win,
    as an inventory's do); energy readings replace those of the same nodes in `span`;
    counters replace what `counters_span` (source, start, end) held; allocations replace
    those with the same name and window."""

    usage: pa.Table | None = None  # tables.GPU_USAGE
    span: tuple[int, int] | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    prefer_new: bool = False
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    energy: list[dict[str, Any]] = field(default_factory=list)
    counters: list[dict[str, Any]] = field(default_factory=list)
    counters_span: tuple[str, int, int] | None = None
    allocations: pa.Table | None = None  # tables.ALLOCATIONS
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int | None = None  # what the result reports (default: the usage rows)
    digest: str | None = None  # content digest known only once read (a window's data)


@dataclass
class Reading:
    """One input of a source: what it is, its content digest when known before reading (the
    same input twice changes nothing), and its facts in parts (a long window is read in
    parts so that memory stays bounded). Parts are staged and written in one transaction,
    unless `commit_each` (a watch: each batch of changes is written as it comes)."""

    kind: str
    what: str
    parts: Iterable[Facts]
    digest: str | None = None
    seen_note: str = "this input was"
    checkpoint_ms: int | None = None
    commit_each: bool = False
    log: bool = True  # keep it in the ingest log (not a live API's state)
    window: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)  # said even when nothing is new


@dataclass
class ReadContext:
    """What a read may know of the world: the time (an argument, never the clock), the
    checkpoint of a range source, the label keys attribution asks for, what the store
    already knows that a source needs (pod UIDs for the agent), and progress."""

    now_ms: int
    at_ms: int | None = None  # the instant a scrape stands for, when given
    checkpoint_ms: int | None = None
    label_keys: tuple[str, ...] = ()
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] | None = None
    progress: Callable[[str, int, int], None] | None = None


class EmptyRead(InputError):
    """A read that found nothing to store: an error for a one-off ingest, a quiet run for
    `collect` (whose checkpoint still moves on)."""


class Source(Protocol):
    kind: ClassVar[str]
    mode: ClassVar[str]  # instant | range | snapshot | push
    description: ClassVar[str]
    default_interval: ClassVar[str]
    config: ClassVar[type[SourceConfig]]

    def read(self, config: Any, ctx: ReadContext) -> Iterator[Reading]: ...


REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Register a source kind under its name (a class decorator)."""
    if cls.kind in REGISTRY and REGISTRY[cls.kind] is not cls:
        raise ValueError(f"source kind {cls.kind!r} registered twice")
    REGISTRY[cls.kind] = cls
    return cls


def needs(config: type[SourceConfig]) -> tuple[str, ...]:
    """The fields a configured source of this kind must give (no default)."""
    return tuple(
        name
        for name, f in config.model_fields.items()
        if f.is_required() and name not in ("kind", "name")
    )
