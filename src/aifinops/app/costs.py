"""Costs: the window a question is about, the allocation run in the engine (or OpenCost's
imported allocations, attributed by our rules), and unit costs per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from aifinops.app.context import AppContext
from aifinops.app.prices import Prices
from aifinops.core.attribution import resolve_dimensions
from aifinops.core.model import (
    ALL_DIMENSIONS,
    BUCKETS,
    IDLE,
    UNALLOCATED,
    UNIT_COUNTS,
    UNITS,
    CostReport,
    CostRow,
    IdlePolicy,
    SharedGpuPolicy,
    UnitCounts,
    UnpricedNode,
    even_split_note,
    normalise_dimension,
    served_models_note,
)
from aifinops.core.money import ZERO, dollars_from_units, hours_from_ms, window_share
from aifinops.core.pricing import NodeRule
from aifinops.core.unit_keys import COUNTABLE_DIMENSIONS, unit_key
from aifinops.core.windows import Window, align_up, allocation_step, from_ms, iso_z, parse_duration
from aifinops.errors import UsageError
from aifinops.store import facts as stored
from aifinops.store import rollups
from aifinops.store.allocate import AllocationQuery, allocate, price_table
from aifinops.store.units import counts_jobs, ended_jobs, workload_increases

SOURCES = ("telemetry", "opencost")


@dataclass(frozen=True)
class CostQuery:
    """A `cost` question, as given (checked by `Costs.check`)."""

    window: str | None = None
    last: str | None = None
    step: str | None = None
    by: Sequence[str] = ("team",)
    idle: IdlePolicy | str | None = None
    shared_gpu: SharedGpuPolicy | str | None = None
    team: str | None = None
    unit: str | None = None
    source: str = "telemetry"
    node_buckets: bool = False
    bill_rules: tuple[NodeRule, ...] = ()


class Costs:
    def __init__(self, ctx: AppContext, prices: Prices):
        self.ctx, self.prices = ctx, prices

    def data_extent(self) -> tuple[int, int] | None:
        return stored.usage_extent(self.ctx.store)

    def data_end(self) -> int | None:
        """Where the newest samples end (their instant plus their duration)."""
        return stored.usage_end(self.ctx.store)

    def utilization(self, lookback_ms: int) -> list[dict[str, Any]]:
        """Per node and GPU, its newest sample (within `lookback_ms` of the store's newest):
        the share of it the GPU was busy and who held it."""
        out = []
        for r in stored.newest_samples(self.ctx.store, lookback_ms):
            dur = r["duration_ms"] or 0.0
            out.append({
                "node": r["node"], "gpu": r["gpu"], "gpu_model": r["gpu_model"],
                "at": iso_z(r["ts_ms"]),
                "sample_seconds": round(dur / 1000, 3),
                "utilization": round(r["busy_ms"] / dur, 4) if dur > 0 else None,
                "holders": r["holders"] or [],
            })  # fmt: skip
        return out

    def utilization_grid(self, win: Window, step: timedelta) -> dict[str, Any]:
        """Per node and GPU, each step's busy share of its sampled time in the window (None
        where it was not sampled), oldest step first; nodes and GPUs in name order."""
        step_ms = int(step.total_seconds() * 1000)
        start_ms, end_ms = win.start_ms, win.end_ms
        first = start_ms - start_ms % step_ms
        steps = list(range(first, end_ms, step_ms))
        index = {b: i for i, b in enumerate(steps)}
        gpus: dict[tuple[str, str], dict[str, Any]] = {}
        for r in stored.utilization_grid(self.ctx.store, start_ms, end_ms, step_ms):
            cell = gpus.setdefault((r["node"], r["gpu"]), {
                "node": r["node"], "gpu": r["gpu"], "gpu_model": r["gpu_model"],
                "cells": [None] * len(steps), "sampled_ms": 0.0, "busy_ms": 0.0})  # fmt: skip
            if r["sampled_ms"] > 0:
                cell["cells"][index[r["bucket_ms"]]] = round(r["busy_ms"] / r["sampled_ms"], 4)
            cell["sampled_ms"] += r["sampled_ms"]
            cell["busy_ms"] += r["busy_ms"]
        out = []
        for g in gpus.values():
            sampled, busy = g.pop("sampled_ms"), g.pop("busy_ms")
            g["sampled_hours"] = round(sampled / 3_600_000, 4)
            g["utilization"] = round(busy / sampled, 4) if sampled > 0 else None
            out.append(g)
        return {"steps": [iso_z(b) for b in steps], "gpus": out}

    def counts_jobs(self, win: Window) -> bool:
        """Whether the window holds job counts (a job counter's sample, a Slurm job's end)."""
        return counts_jobs(self.ctx.store, win.start_ms, win.end_ms)

    def resolve_window(self, window: str | None, last: str | None) -> Window:
        """The window asked for, or the 7 days up to the newest sample in the store."""
        if window and last:
            raise UsageError("give --window or --last, not both", where="--window/--last")
        if window:
            return Window.parse(window)
        if last:
            return Window.last(parse_duration(last, what="--last"), self.ctx.clock())
        extent = self.data_extent()
        if extent is None:
            raise UsageError(
                "the store holds no GPU samples yet",
                where=self.ctx.store_name,
                hint="ingest some (aifinops ingest nvidia-smi DIR) or run `aifinops demo`",
            )
        end = align_up(from_ms(extent[1] + 1), timedelta(hours=1))
        return Window(end - timedelta(days=7), end)

    def cost(self, q: CostQuery) -> CostReport:
        if q.source not in SOURCES:
            raise UsageError(f"unknown cost source {q.source!r}", where="--source",
                             hint=", ".join(SOURCES))  # fmt: skip
        window = q.window
        if q.source == "opencost" and not q.window and not q.last:
            found = stored.allocations_extent(self.ctx.store, "opencost")
            if found is None:
                raise UsageError("no OpenCost allocations imported", where="--source opencost",
                                 hint="aifinops ingest opencost FILE|URL")  # fmt: skip
            window = f"{from_ms(found[0]).isoformat()},{from_ms(found[1]).isoformat()}"
        win = self.resolve_window(window, q.last)
        dims = self._dimensions(q)
        alloc = self.ctx.settings.allocation
        idle_p = _policy(IdlePolicy, q.idle or alloc.idle, "--idle")
        shared_p = _policy(SharedGpuPolicy, q.shared_gpu or alloc.shared_gpu, "--shared-gpu")
        step_ms = allocation_step(q.step or alloc.step, win)
        if step_ms < 60_000:
            raise UsageError("the step must be at least 1m", where="--step")
        if q.source == "opencost":
            if q.unit is not None or q.step is not None:
                raise UsageError("--unit and --step need telemetry", where="--source opencost")
            rows, asset, notes = self._from_allocations(win, dims, q.team)
            rows.sort(key=lambda r: (any(r.is_bucket(b) for b in BUCKETS), -r.total_cost))
            return CostReport(win, None, dims, idle_p, shared_p, asset, rows, [],
                              self.ctx.settings.currency, notes)  # fmt: skip
        return self._allocate(q, win, dims, idle_p, shared_p, step_ms)

    def _compacted_note(self, win: Window, step_ms: int, stepwise: bool) -> str | None:
        """A window read from the raw samples (its ends, or its steps, are not whole hours)
        that reaches back before them, where retention left only the roll-ups: say so."""
        step = step_ms if stepwise else win.end_ms - win.start_ms
        if rollups.usage_source(win.start_ms, win.end_ms, step) is not rollups.RAW:
            return None
        missing = rollups.samples_compacted(self.ctx.store, win.start_ms, win.end_ms)
        if not missing:
            return None
        return (
            f"{missing:,} rows of samples of this window's hours are kept only in the hourly "
            "and daily roll-ups (retention.samples), which a window whose ends (or steps) are "
            "not whole hours cannot read: its cost leaves them out; give whole hours "
            "(--window START,END, and a step in hours) to count them"
        )

    def _dimensions(self, q: CostQuery) -> tuple[str, ...]:
        dims = tuple(normalise_dimension(d) for d in q.by if d.strip())
        if q.unit is not None:
            if q.unit not in UNITS:
                raise UsageError(f"unknown unit {q.unit!r}", where="--unit",
                                 hint=", ".join(UNITS))  # fmt: skip
            if q.unit in ("tokens", "requests") and "model" not in dims:
                raise UsageError("unit costs are per model", where="--unit", hint="add --by model")
            other = [d for d in dims if d not in COUNTABLE_DIMENSIONS]
            if q.unit in ("jobs", "minutes") and (other or not dims):
                raise UsageError(
                    f"jobs are counted per workload, not by {', '.join(other) or 'nothing'}",
                    where="--by",
                    hint="group by team, model (a job counter's queue), workload, namespace, "
                    "project, ...",
                )
            if q.step is not None:
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
        return dims

    def _allocate(
        self,
        q: CostQuery,
        win: Window,
        dims: tuple[str, ...],
        idle_p: IdlePolicy,
        shared_p: SharedGpuPolicy,
        step_ms: int,
    ) -> CostReport:
        prices, nodes = self.prices.node_prices(q.bill_rules)
        query = AllocationQuery(win.start_ms, win.end_ms, step_ms, dims, shared_p, idle_p,
                                per_step=q.step is not None, team=q.team,
                                node_buckets=q.node_buckets)  # fmt: skip
        result = allocate(self.ctx.store, query, price_table(prices, nodes),
                          self.ctx.settings.attribution.rules())  # fmt: skip
        rows = [cost_row(r, dims, step_ms, win) for r in result.rows.to_pylist()]
        rows = [r for r in rows if r.gpu_hours or r.total_cost or r.idle_cost]
        if q.unit is not None:
            rows = self._with_units(rows, win, dims)
        rows.sort(key=lambda r: (r.start or "", any(r.is_bucket(b) for b in BUCKETS),
                                 -r.total_cost, tuple(r.key.values())))  # fmt: skip
        by_node = {r["node_id"]: r for r in nodes.to_pylist()}
        price_of = {p.node_id: p for p in prices}
        unpriced = sorted(
            (
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
            ),
            key=lambda u: u.node,
        )
        notes = list(self.prices.notes)
        if (even := even_split_note(result.even_split)) is not None:
            notes.append(even)
        if (served := served_models_note(result.served)) is not None:
            notes.append(served)
        if (compacted := self._compacted_note(win, step_ms, query.stepwise)) is not None:
            notes.append(compacted)
        if q.team is not None:
            notes.append(f"rows limited to team {q.team!r}; asset_cost covers the whole fleet")
        if not rows and (extent := self._outside_data(win, q.team)):
            notes.append(extent)
        return CostReport(win, q.step or None, dims, idle_p, shared_p,
                          dollars_from_units(result.asset_units), rows, unpriced,
                          self.ctx.settings.currency, notes)  # fmt: skip

    def _outside_data(self, win: Window, team: str | None) -> str | None:
        """For a report with no rows: where the store's samples are, if it has some and the
        window holds none of them (with --team, a window that meets them may just hold
        none of the team's)."""
        extent = self.data_extent()
        if extent is None:
            return None
        first, last = extent
        if team is not None and first < win.end_ms and last >= win.start_ms:
            return None
        return (
            f"no GPU samples in this window; the store's samples run from "
            f"{from_ms(first).isoformat().replace('+00:00', 'Z')} to "
            f"{from_ms(last).isoformat().replace('+00:00', 'Z')} "
            "(give --window START,END, or neither --window nor --last for the 7 days up to "
            "the newest sample)"
        )

    def _with_units(self, rows: list[CostRow], win: Window, dims: tuple[str, ...]) -> list[CostRow]:
        """Each row with what its scope counted in the window: the serving and job counters'
        increases and the Slurm jobs that ended, each workload's put under the row the
        allocation puts its GPU time in (`core.unit_keys`; a row's infrastructure
        dimensions, which counters do not carry, are not matched)."""
        rules = self.ctx.settings.attribution.rules()
        keyed = tuple(d for d in dims if d in COUNTABLE_DIMENSIONS)
        counts: dict[tuple[str, ...], dict[str, float]] = {}

        def add(r: dict[str, Any], model: str | None, metric: str, amount: float) -> None:
            key = unit_key(rules, keyed, r["workload_id"], model, r["namespace"],
                           dict(r["labels"] or {}), dict(r["ns_labels"] or {}))  # fmt: skip
            if key is not None and metric in UNIT_COUNTS:
                got = counts.setdefault(key, {})
                got[metric] = got.get(metric, 0.0) + amount

        store, start, end = self.ctx.store, win.start_ms, win.end_ms
        for r in workload_increases(store, start, end).to_pylist():
            add(r, r["model"], r["metric"], float(r["increase"] or 0.0))
        for r in ended_jobs(store, start, end).to_pylist():
            add(r, None, "jobs", float(r["jobs"]))
        out = []
        for row in rows:
            key = tuple(row.key[d] for d in keyed)
            if key in counts and not any(row.is_bucket(b) for b in BUCKETS):
                row = replace(row, units=UnitCounts(**counts[key]))
            out.append(row)
        return out

    def _from_allocations(
        self, win: Window, dims: tuple[str, ...], team: str | None
    ) -> tuple[list[CostRow], Decimal, list[str]]:
        """Rows from imported OpenCost allocations, prorated to the window's overlap and
        attributed with the same rules as the engine's rows."""
        rules = self.ctx.settings.attribution.rules()
        found = stored.allocations_in(self.ctx.store, "opencost", win.start_ms, win.end_ms)
        infra_of = {r["node_id"]: r for r in stored.nodes(self.ctx.store).to_pylist()}
        groups: dict[tuple[str, ...], list[Decimal]] = {}
        asset = other = Decimal(0)
        for a in found:
            share = window_share(a["start_ms"], a["end_ms"], win.start_ms, win.end_ms)
            money = [Decimal(str(a[k] or 0)) * share
                     for k in ("gpu_hours", "gpu_cost", "cpu_cost", "ram_cost")]  # fmt: skip
            asset += money[1] + money[2] + money[3]
            other += Decimal(str(a["other_cost"] or 0)) * share
            name, ns = a["name"], a["namespace"]
            if name.startswith("__idle__") or name.startswith("__unallocated__") or not ns:
                if team is not None:
                    continue
                key = dict.fromkeys(dims, IDLE if name.startswith("__idle__") else UNALLOCATED)
            else:
                attributed = resolve_dimensions(rules, ns, dict(a["labels"] or {}),
                                                dict(a["namespace_labels"] or {}))  # fmt: skip
                if team is not None and attributed["team"] != team:
                    continue
                node = infra_of.get(a["node_id"]) or {}
                infra: dict[str, Any] = {
                    d: node.get(d) for d in ("gpu_model", "provider", "region", "instance_type")
                }
                infra |= {"namespace": ns, "workload": f"{ns}/{a['pod']}", "node": a["node_id"]}
                key = {d: attributed.get(d) or infra.get(d) or UNALLOCATED for d in dims}
            acc = groups.setdefault(tuple(key[d] for d in dims), [Decimal(0)] * 4)
            for i, m in enumerate(money):
                acc[i] += m
        rows = [
            CostRow(key=dict(zip(dims, k, strict=True)), gpu_hours=v[0], gpu_cost=v[1],
                    cpu_cost=v[2], ram_cost=v[3], idle_cost=ZERO, waste_cost=ZERO,
                    used_gpu_hours=ZERO)
            for k, v in groups.items()
        ]  # fmt: skip
        notes = [f"from OpenCost allocations ({len(found)} in the window, prorated to it)"]
        if other:
            notes.append(
                f"PV, network, load-balancer, shared and external costs ({other:.2f}) are not "
                "in these rows"
            )
        return rows, asset, notes


def _policy(kind: Any, value: Any, where: str) -> Any:
    """`value` as the policy enum `kind`, or a usage error naming the choices."""
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"unknown policy {value!r}", where=where,
                         hint=", ".join(p.value for p in kind)) from None  # fmt: skip


def cost_row(r: dict[str, Any], dims: tuple[str, ...], step_ms: int, win: Window) -> CostRow:
    """One row of the engine's result as a cost row (money from cost units to dollars)."""
    start = end = None
    if "step" in r:
        start = iso_z(r["step"])
        end = iso_z(min(r["step"] + step_ms, win.end_ms))
    return CostRow(
        key={d: r[d] for d in dims},
        gpu_hours=hours_from_ms(r["gpu_ms"]),
        gpu_cost=dollars_from_units(r["gpu_units"]),
        cpu_cost=dollars_from_units(r["cpu_units"]),
        ram_cost=dollars_from_units(r["ram_units"]),
        idle_cost=dollars_from_units(r["idle_units"]),
        waste_cost=dollars_from_units(r["waste_units"]),
        used_gpu_hours=hours_from_ms(r["used_ms"]),
        efficiency_signals=tuple(sorted(s for s in (r.get("signals") or []) if s)),
        start=start,
        end=end,
    )
