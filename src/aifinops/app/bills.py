"""Bills: ingest deliveries, summarise them per currency, check tags, reconcile the
allocation with them (DESIGN §2.9), and write the chargeback exports."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aifinops.app.costs import CostQuery, Costs
from aifinops.app.ingest import Ingest, IngestResult
from aifinops.core.model import CostReport, normalise_dimension
from aifinops.core.money import round_to_total, to_cents, window_share
from aifinops.core.pricing import NodeRule
from aifinops.core.reconcile import (
    NodeBill,
    OtherSpend,
    ReconciledReport,
    group_key,
    node_costs,
    resource_key,
    scale_to_bill,
)
from aifinops.core.windows import Window, from_ms, iso_ms, month_bounds, to_ms
from aifinops.errors import UsageError
from aifinops.outputs.chargeback import write_chargeback
from aifinops.sources.inputs import file_digest
from aifinops.store import bills as stored_bills
from aifinops.store import facts as stored
from aifinops.store import state

Progress = Callable[[str, int, int], None]
EXPORT_DIMENSIONS = (
    "workload", "team", "project", "model", "environment", "cost_center", "owner",
    "namespace", "node", "provider", "region", "instance_type",
)  # fmt: skip


class Bills:
    def __init__(self, ingest: Ingest, costs: Costs):
        self.ingest, self.costs, self.ctx = ingest, costs, ingest.ctx

    # -- ingest -------------------------------------------------------------------------
    def ingest_files(
        self,
        kind: str,
        paths: Iterable[Path],
        *,
        options: dict[str, Any] | None = None,
        progress: Progress | None = None,
        replace: bool = False,
    ) -> list[IngestResult]:
        """Load bill files of one format as one delivery. A file stored before changes
        nothing; a line repeated within the delivery counts once. A delivery that carries a
        billing period the store holds restates it (replaces it, saying by how much), unless
        its lines' own ids tell it is another part of the stored delivery (a CUR in several
        files, given one by one): then its lines are added. A CUR manifest beside the files
        that lists them all makes them the whole delivery. `replace` restates in any case
        (rules: `store.bills.store_delivery`)."""
        from aifinops.sources.bills import engine as bills
        from aifinops.sources.bills.manifest import delivery_of

        formats = bills.formats()
        if kind not in formats:
            raise UsageError(f"unknown bill format {kind!r}", hint=", ".join(formats))
        fmt, options, store = formats[kind], dict(options or {}), self.ctx.store
        results: list[IngestResult] = []
        todo = []
        for path in paths:
            digest = file_digest([path], extra=f"{kind}|{sorted(options.items())}")
            result = IngestResult(kind, str(path), "unchanged")
            if self.ingest.seen(digest, result, "this file was"):
                results.append(result)
            else:
                todo.append((path, digest, result))
        if not todo:
            return results
        stage = store.stage("bills", bills.STAGED)
        try:
            done = 0
            with store.reading_into(stage) as reader:
                for n, (path, _, result) in enumerate(todo, 1):
                    read = bills.BillRead()
                    done += bills.stage_bill(reader, path, fmt, stage, options=options,
                                             read=read)  # fmt: skip
                    self._read_notes(result, read, progress, done, n)
            # a line repeated in the delivery is kept once, in the first file (by name) that
            # has it: each file is told how many of its lines were repeats, and of what
            repeats = stored_bills.repeats_in_stage(store, stage)
            for path, _, result in todo:
                within, across = repeats.get(path.name, (0, 0))
                result.rows -= within + across
                if within:
                    result.notes.append(
                        f"{within} line(s) repeated within the file were counted once"
                    )
                if across:
                    result.notes.append(
                        f"{across} line(s) also in another file of this delivery were counted once"
                    )
            manifest = delivery_of([p for p, _, _ in todo]) if kind == "cur" else None
            if manifest is not None:
                todo[0][2].notes.append(manifest.note)
                replace = replace or manifest.complete
            with store.transaction():
                names = ", ".join(p.name for p, _, _ in todo)
                written = stored_bills.store_delivery(store, stage, replace=replace,
                                                      repeats=bool(repeats),
                                                      at_ms=to_ms(self.ctx.clock()),
                                                      source=names)  # fmt: skip
                for r in written:
                    todo[0][2].notes.append(_period_note(r))
                for path, digest, result in todo:
                    self.ingest.log(state.LoggedInput(digest, kind, str(path), rows=result.rows))
                    result.status = "loaded"
        finally:
            store.drop_stage(stage)
        return results + [r for _, _, r in todo]

    @staticmethod
    def _read_notes(result: IngestResult, read: Any, progress: Any, done: int, n: int) -> None:
        """What one file's read tells its user: its problems, and its progress."""
        if progress:
            progress("cost lines", done, n)
        result.notes += read.problems
        if read.skipped > len(read.problems):
            result.notes.append(f"{read.skipped} line(s) skipped in all")
        if read.short > 1:
            result.notes.append(
                f"{read.short} lines have fewer fields than the header: if the export "
                "leaves out trailing empty fields, ingest it with --pad-short-rows"
            )
        result.rows = read.rows

    # -- reading the bills ----------------------------------------------------------------
    def summary(
        self, *, by: Sequence[str] = ("provider",), window: str | None = None
    ) -> list[dict[str, Any]]:
        """Billed, effective and list cost grouped by provider, service, account or day —
        always per currency: amounts in different currencies are never added together."""
        for d in by:
            if d not in stored_bills.SUMMARY_DIMENSIONS:
                raise UsageError(f"cannot group bills by {d!r}", where="--by",
                                 hint=", ".join(stored_bills.SUMMARY_DIMENSIONS))  # fmt: skip
        span = _span(window)
        out = []
        for r in stored_bills.summary(self.ctx.store, by, span):
            key = {k: r[k] for k in (*by, "currency") if k in r and (k != "currency" or k in by)}
            if "day" in key and key["day"] is not None:
                key["day"] = from_ms(key["day"]).date().isoformat()
            out.append(
                {"key": key, "billed_cost": float(r["billed_cost"] or 0),
                 "effective_cost": float(r["effective_cost"] or 0),
                 "list_cost": float(r["list_cost"] or 0), "currency": r["currency"],
                 "_billed": r["billed_cost"]}
            )  # fmt: skip
        return out

    def tags_report(
        self, *, required: Sequence[str] | None = None, window: str | None = None, top: int = 10
    ) -> dict[str, Any]:
        """Per currency, the share of billed cost whose lines carry every required tag (and
        each tag alone), and the largest resources missing one."""
        tags = list(required or self.ctx.settings.bills.required_tags)
        totals, untagged = stored_bills.tag_coverage(self.ctx.store, tags, _span(window), top)
        out: dict[str, Any] = {"required_tags": tags, "currencies": []}
        for row in totals:
            currency, total, tagged = row[0], row[1] or Decimal(0), row[2] or Decimal(0)
            out["currencies"].append(
                {"currency": currency, "billed_cost": float(total),
                 "tagged_cost": float(tagged),
                 "tagged_share": float(tagged / total) if total else None,
                 "by_tag": {t: (float(v / total) if total else None)
                            for t, v in zip(tags, row[3:], strict=True)}}
            )  # fmt: skip
        out["largest_untagged"] = [
            {"resource_id": r[0], "provider": r[1], "service": r[2], "currency": r[3],
             "billed_cost": float(r[4])}
            for r in untagged
        ]  # fmt: skip
        return out

    # -- reconciliation (DESIGN §2.9) -------------------------------------------------------
    def reconcile(
        self,
        *,
        window: str | None = None,
        last: str | None = None,
        by: Sequence[str] = ("team",),
        idle: str | None = None,
        shared_gpu: str | None = None,
    ) -> ReconciledReport:
        """The allocation at list price next to the same allocation scaled, node by node,
        to the bill's EffectiveCost for that node's resource id over the window; and the
        billed spend that is no node of the allocation, by provider and service category.

        1. Allocate at list price, keeping the node on every row.
        2. Find each node's bill lines by resource id (an Azure scale set's lines go to its
           instances by their share of its list cost), prorated to the window.
        3. A node with no list price but a bill is priced from its bill and allocated again.
        4. Scale each node's rows to its billed EffectiveCost; the rest of the bill is
           other spend, by provider, service category and currency."""
        win = self.costs.resolve_window(window, last)
        dims = tuple(normalise_dimension(d) for d in by if d.strip())
        inner = dims if "node" in dims else (*dims, "node")
        span = f"{win.start.isoformat()},{win.end.isoformat()}"

        def allocate(rules: tuple[NodeRule, ...] = ()) -> CostReport:
            return self.costs.cost(CostQuery(window=span, by=inner, idle=idle,
                                             shared_gpu=shared_gpu, node_buckets=True,
                                             bill_rules=rules))  # fmt: skip

        currency, store = self.ctx.settings.currency, self.ctx.store
        report = allocate()
        ids = stored.node_column(store, "resource_id")
        listed, gpu_hours = node_costs(report.rows)
        target, notes = _bill_targets(ids, listed)
        billed, other, foreign = _split_bill(
            stored_bills.lines_in_window(store, win.start_ms, win.end_ms), win, target, currency
        )
        for node, cur in sorted(foreign):
            notes.append(
                f"node {node} is billed in {cur}, not {currency}: those lines are "
                "kept apart under other spend, the node stays at list price"
            )
        counts = stored.node_column(store, "gpu_count")
        from_bill: dict[str, Decimal] = {}
        for node, amount in billed.items():
            hours = gpu_hours.get(node, Decimal(0)) / max(int(counts.get(node) or 0), 1)
            if listed.get(node, Decimal(0)) == 0 and amount > 0 and hours > 0:
                from_bill[node] = amount / hours
        if from_bill:
            report = allocate(tuple(NodeRule("name", n, node_hourly=r, source="bill")
                                    for n, r in from_bill.items()))  # fmt: skip
            for node, rate in sorted(from_bill.items()):
                notes.append(f"node {node} has no list price; priced from its bill at "
                             f"{rate:.4f} {currency} per node-hour")  # fmt: skip
        rows, node_list = scale_to_bill(report.rows, dims, billed, unlisted=set(from_bill))
        nodes = [
            NodeBill(n, ids.get(n), Decimal(0) if n in from_bill else node_list[n], billed.get(n))
            for n in sorted(node_list)
        ]
        for nb in nodes:
            if nb.billed_cost is not None and node_list[nb.node] == 0:
                notes.append(
                    f"node {nb.node} has no list price and no GPU-hours in the window; its "
                    f"bill ({nb.billed_cost:.2f} {currency}) is in no row"
                )
        covered = sum(1 for nb in nodes if nb.billed_cost is not None)
        notes.insert(0, f"{covered} of {len(nodes)} node(s) found in the bill; the others "
                        "stay at list price (unbilled_cost)")  # fmt: skip
        if not stored_bills.has_bills(store):
            notes.insert(0, "no bills ingested (aifinops ingest focus|cur|azure|oci FILE)")
        rows.sort(key=lambda r: (r.key.get(dims[0], "").startswith("__") if dims else False,
                                 -r.list_cost, tuple(r.key.values())))  # fmt: skip
        other.sort(key=lambda o: (o.currency != currency, o.currency, -o.effective_cost,
                                  o.provider, o.service_category))  # fmt: skip
        return ReconciledReport(win, dims, currency, rows, nodes, other, notes + report.notes)

    # -- exports --------------------------------------------------------------------------
    def export_focus(
        self, path: Path, *, window: str | None = None, last: str | None = None, step: str = "1h"
    ) -> dict[str, Any]:
        """The allocated chargeback, per workload and step, as a FOCUS 1.2 dataset."""
        from aifinops.outputs.focus_export import ExportRow, focus_table, write_table

        if path.suffix.lower() not in (".csv", ".parquet"):
            raise UsageError("the export is written as .csv or .parquet", where=str(path))
        report = self.costs.cost(CostQuery(window=window, last=last, step=step,
                                           by=EXPORT_DIMENSIONS))  # fmt: skip
        rows = [
            ExportRow(start_ms=iso_ms(r.start) or 0, end_ms=iso_ms(r.end) or 0, key=dict(r.key),
                      gpu_hours=r.gpu_hours, cost=r.total_cost, list_cost=r.total_cost,
                      idle_cost=r.idle_cost, waste_cost=r.waste_cost,
                      gpu_efficiency=r.gpu_efficiency)
            for r in report.rows
        ]  # fmt: skip
        export = self.ctx.settings.export
        table = focus_table(rows, currency=report.currency, account_id=export.billing_account_id,
                            account_name=export.billing_account_name)  # fmt: skip
        write_table(table, path)
        return {
            "path": str(path),
            "rows": table.num_rows,
            "window": [report.window.start.isoformat(), report.window.end.isoformat()],
            "billed_cost": float(sum((r.cost for r in rows), Decimal(0))),
            "asset_cost": float(report.asset_cost),
            "currency": report.currency,
        }

    def export_chargeback(
        self, path: Path | None, *, month: str, by: Sequence[str] = ("team",)
    ) -> list[dict[str, Any]]:
        """A plain chargeback table for finance: one row per group (buckets included) for a
        calendar month, then a TOTAL row; rows sum to the asset cost. Rounded only here, so
        that what finance adds up is what the file says (`round_to_total`): the rows'
        total_cost (and GPU-hours) add up to the TOTAL row, and each row's GPU, CPU and RAM
        cost to its total_cost."""
        report = self.costs.cost(CostQuery(window=month_window(month), by=by))
        totals = round_to_total([r.total_cost for r in report.rows])
        hours = round_to_total([r.gpu_hours for r in report.rows], 4)
        rows = []
        for r, total, gpu_hours in zip(report.rows, totals, hours, strict=True):
            eff = r.gpu_efficiency
            gpu, cpu, ram = round_to_total([r.gpu_cost, r.cpu_cost, r.ram_cost], total=total)
            rows.append(
                {**{d: r.key[d] for d in by}, "gpu_hours": f"{gpu_hours:.4f}",
                 "gpu_cost": f"{gpu:.2f}", "cpu_cost": f"{cpu:.2f}", "ram_cost": f"{ram:.2f}",
                 "idle_cost": f"{to_cents(r.idle_cost):.2f}", "total_cost": f"{total:.2f}",
                 "waste_cost": f"{to_cents(r.waste_cost):.2f}",
                 "gpu_efficiency": "" if eff is None else f"{eff:.4f}",
                 "currency": report.currency}
            )  # fmt: skip
        rows.append(
            {**{d: "TOTAL" for d in by[:1]}, **{d: "" for d in by[1:]},
             "gpu_hours": f"{sum(hours, Decimal('0.0000')):.4f}",
             "gpu_cost": "", "cpu_cost": "", "ram_cost": "", "idle_cost": "",
             "total_cost": f"{sum(totals, Decimal('0.00')):.2f}", "waste_cost": "",
             "gpu_efficiency": "", "currency": report.currency}
        )  # fmt: skip
        if path is not None:
            write_chargeback(path, rows)
        return rows


def _period_note(r: stored_bills.PeriodWritten) -> str:
    """What a delivery did to a billing period the store held."""
    period = "?" if r.period_start_ms is None else from_ms(r.period_start_ms).date()
    what = f"{r.provider} account {r.account} period {period}"
    if r.action == "added":
        return (f"added to {what}: {r.lines} line(s) of another part of the delivery, billed "
                f"{r.billed_before:.2f} + {r.billed_after:.2f} {r.currencies}")  # fmt: skip
    if r.action == "stored":
        return f"every line for {what} was stored already; nothing added"
    return (f"restated: {what}: billed {r.billed_before:.2f} -> {r.billed_after:.2f} "
            f"{r.currencies}")  # fmt: skip


def _span(window: str | None) -> tuple[int, int] | None:
    if not window:
        return None
    win = Window.parse(window)
    return win.start_ms, win.end_ms


def _split_bill(
    lines: Iterable[tuple[Any, ...]],
    win: Window,
    target: dict[str, list[tuple[str, Decimal]]],
    currency: str,
) -> tuple[dict[str, Decimal], list[OtherSpend], set[tuple[str, str]]]:
    """The bill in the window: EffectiveCost per node (by `target`, key -> shares), the
    rest as other spend, and the (node, currency) pairs billed in another currency."""
    billed: dict[str, Decimal] = {}
    other: dict[tuple[str, str, str], list[Decimal]] = {}
    foreign: set[tuple[str, str]] = set()
    for rid, provider, category, cur, cs, ce, bill, eff in lines:
        # a line reaching past the window: its share of the window
        frac = Decimal(1) if cs is None else window_share(cs, ce, win.start_ms, win.end_ms)
        shares = target.get(resource_key(rid) or "")
        if shares and cur == currency:
            for node, share in shares:
                billed[node] = billed.get(node, Decimal(0)) + (eff or 0) * frac * share
            continue
        for node, _ in shares or ():
            foreign.add((node, cur or "no currency"))
        acc = other.setdefault(
            (provider or "unknown", category or "Other", cur or "no currency"),
            [Decimal(0), Decimal(0)],
        )
        acc[0] += (bill or 0) * frac
        acc[1] += (eff or 0) * frac
    spend = [OtherSpend(p, c, cur, v[0], v[1]) for (p, c, cur), v in other.items()]
    return billed, spend, foreign


def _bill_targets(
    ids: dict[str, str | None], listed: dict[str, Decimal]
) -> tuple[dict[str, list[tuple[str, Decimal]]], list[str]]:
    """Where a bill line goes, by the key of its resource id: the node whose own id it is
    (instance id, VM name), or the instances of the Azure scale set it is, each by its share
    of their list cost. With the notes on ids that name more than one node."""
    by_key: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    for node in sorted(listed):
        group = group_key(ids.get(node))
        if group:
            groups.setdefault(group, []).append(node)
        elif key := resource_key(ids.get(node)):
            by_key.setdefault(key, []).append(node)
    notes = [
        f"resource id {key!r} names {len(nodes)} nodes ({', '.join(nodes)}); not reconciled"
        for key, nodes in by_key.items()
        if len(nodes) > 1
    ]
    target: dict[str, list[tuple[str, Decimal]]] = {}
    for key, nodes in groups.items():
        total = sum((listed[n] for n in nodes), Decimal(0))
        target[key] = [(n, listed[n] / total if total else Decimal(1) / len(nodes)) for n in nodes]
    target.update({k: [(v[0], Decimal(1))] for k, v in by_key.items() if len(v) == 1})
    return target, notes


def month_window(month: str) -> str:
    """`2026-11` -> the half-open UTC window of that calendar month."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise UsageError(f"not a month: {month!r}", where="--month", hint="YYYY-MM, e.g. 2026-11")
    start, end = month_bounds(datetime(int(found.group(1)), int(found.group(2)), 1, tzinfo=UTC))
    return f"{start.isoformat()},{end.isoformat()}"
