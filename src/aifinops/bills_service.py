"""The bills part of the service façade: ingest bills, summarise them, check tags.

`Service` inherits these methods; they use its store, clock and ingest log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifinops.core.model import normalise_dimension
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
from aifinops.core.windows import Window, from_ms, iso_ms, month_bounds
from aifinops.errors import UsageError

if TYPE_CHECKING:
    from aifinops.config import Settings
    from aifinops.core.model import CostReport
    from aifinops.service import IngestResult
    from aifinops.store.db import Store

Progress = Callable[[str, int, int], None]
_PERIOD = "coalesce(billing_period_start_ms, charge_period_start_ms)"
_SAME_PERIOD = (
    "provider IS NOT DISTINCT FROM ? AND billing_account_id IS NOT DISTINCT FROM ? "
    f"AND {_PERIOD} = ?"
)


class BillsService:
    """Mixed into `Service`, which provides the store, the settings, `cost`, and the ingest
    log (`_already`, `_log`)."""

    settings: Settings
    store: Store
    if TYPE_CHECKING:

        def _already(self, digest: str, result: Any = None, what: str = "") -> bool: ...
        def _log(self, digest: str, kind: str, path: str, node: str | None,
                 start: int | None, end: int | None, rows: int) -> None: ...  # fmt: skip
        def cost(self, **kwargs: Any) -> CostReport: ...
        def resolve_window(self, window: str | None, last: str | None) -> Window: ...

    # -- ingest -----------------------------------------------------------------------
    def ingest_focus(
        self, paths: Iterable[Path], progress: Progress | None = None
    ) -> list[IngestResult]:
        return self.ingest_bills("focus", paths, progress=progress)

    def ingest_bills(
        self,
        kind: str,
        paths: Iterable[Path],
        *,
        options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> list[IngestResult]:
        """Load bill files of one format as one delivery. A file stored before changes
        nothing; a delivery that carries a billing period again (provider, account, period)
        replaces what was stored for it and says by how much; a line repeated within the
        delivery counts once."""
        from aifinops.service import IngestResult, _digest
        from aifinops.sources import bills

        formats = bills.formats()
        if kind not in formats:
            raise UsageError(f"unknown bill format {kind!r}", hint=", ".join(formats))
        fmt = formats[kind]
        options = dict(options or {})
        results: list[IngestResult] = []
        todo = []
        for path in paths:
            digest = _digest([path], extra=f"{kind}|{sorted(options.items())}")
            result = IngestResult(kind, str(path), "unchanged")
            if self._already(digest, result, "this file was"):
                results.append(result)
            else:
                todo.append((path, digest, result))
        if not todo:
            return results
        stage = self.store.stage("bills", bills.COST_LINES)
        try:
            done = 0
            for path, _, result in todo:
                read = bills.BillRead()
                for n, batch in enumerate(bills.read_bill(path, fmt, options=options, read=read)):
                    self.store.stage_append(stage, batch)
                    done += batch.num_rows
                    if progress:
                        progress("cost lines", done, n + 1)
                result.notes += read.problems
                if read.skipped > len(read.problems):
                    result.notes.append(f"{read.skipped} line(s) skipped in all")
                if read.short > 1:
                    result.notes.append(
                        f"{read.short} lines have fewer fields than the header: if the export "
                        "leaves out trailing empty fields, ingest it with --pad-short-rows"
                    )
                result.rows = read.rows
            # a line repeated in the delivery is kept once, in the first file (by name) that
            # has it: each file is told how many of its lines were repeats, and of what
            repeats = {
                source: (within, across)
                for source, within, across in self.store.raw(
                    "SELECT source, count(*) FILTER (WHERE first = source), "
                    "count(*) FILTER (WHERE first <> source) FROM (SELECT source, "
                    "row_number() OVER w AS n, first_value(source) OVER w AS first "
                    f'FROM "{stage}" WINDOW w AS (PARTITION BY line_hash ORDER BY source)) '
                    "WHERE n > 1 GROUP BY source"
                )
            }
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
            with self.store.transaction():
                periods = self.store.raw(
                    f'SELECT DISTINCT provider, billing_account_id, {_PERIOD} FROM "{stage}" '
                    "ORDER BY 1, 2, 3"
                )
                first = todo[0][2]
                for provider, account, start in periods:
                    params = [provider, account, start]
                    before = self.store.raw(
                        "SELECT count(*), sum(billed_cost), string_agg(DISTINCT "
                        f"billing_currency, '/') FROM cost_lines WHERE {_SAME_PERIOD}",
                        params,
                    )[0]
                    if not before[0]:
                        continue
                    after = self.store.raw(
                        f'SELECT sum(billed_cost) FROM "{stage}" WHERE {_SAME_PERIOD}', params
                    )[0][0]
                    self.store.raw(f"DELETE FROM cost_lines WHERE {_SAME_PERIOD}", params)
                    first.notes.append(
                        f"restated: {provider} account {account} period "
                        f"{from_ms(start).date() if start is not None else '?'}: billed "
                        f"{before[1]:.2f} -> {after:.2f} {before[2]}"
                    )
                self.store.raw(
                    f'INSERT INTO cost_lines SELECT * FROM "{stage}" '
                    "QUALIFY row_number() OVER (PARTITION BY line_hash ORDER BY source) = 1"
                )
                for path, digest, result in todo:
                    self._log(digest, kind, str(path), None, None, None, result.rows)
                    result.status = "loaded"
        finally:
            self.store.drop_stage(stage)
        return results + [r for _, _, r in todo]

    # -- reading the bills --------------------------------------------------------------
    def bills_summary(
        self, *, by: Sequence[str] = ("provider",), window: str | None = None
    ) -> list[dict[str, Any]]:
        """Billed, effective and list cost grouped by provider, service, account or day —
        always per currency: amounts in different currencies are never added together."""
        dims = {
            "provider": "provider",
            "service": "service_name",
            "account": "billing_account_id",
            "currency": "billing_currency",
            "day": None,
            "category": "service_category",
            "sub_account": "sub_account_id",
            "charge_category": "charge_category",
            "resource": "resource_id",
        }
        for d in by:
            if d not in dims:
                raise UsageError(f"cannot group bills by {d!r}", where="--by",
                                 hint=", ".join(dims))  # fmt: skip
        t = self.store.table("cost_lines")
        if window:
            win = Window.parse(window)
            t = t.filter(
                (t.charge_period_start_ms >= win.start_ms) & (t.charge_period_start_ms < win.end_ms)
            )
        keys = {}
        for d in by:
            if d == "day":
                keys["day"] = (t.charge_period_start_ms // 86_400_000 * 86_400_000).cast("int64")
            else:
                keys[d] = t[dims[d]]  # type: ignore[index]
        if "currency" not in keys:
            keys["currency"] = t.billing_currency
        grouped = t.group_by([v.name(k) for k, v in keys.items()]).aggregate(
            billed_cost=t.billed_cost.sum(),
            effective_cost=t.effective_cost.sum(),
            list_cost=t.list_cost.sum(),
        )
        rows = self.store.con.to_pyarrow(grouped.order_by(list(keys))).to_pylist()
        out = []
        for r in rows:
            key = {k: r[k] for k in keys if k != "currency" or "currency" in by}
            if "day" in key and key["day"] is not None:
                key["day"] = from_ms(key["day"]).date().isoformat()
            out.append(
                {
                    "key": key,
                    "billed_cost": float(r["billed_cost"] or 0),
                    "effective_cost": float(r["effective_cost"] or 0),
                    "list_cost": float(r["list_cost"] or 0),
                    "currency": r["currency"],
                    "_billed": r["billed_cost"],
                }
            )
        return out

    def tags_report(
        self, *, required: Sequence[str] | None = None, window: str | None = None, top: int = 10
    ) -> dict[str, Any]:
        """Per currency, the share of billed cost whose lines carry every required tag (and
        each tag alone), and the largest resources missing one."""
        tags = list(required or self.settings.bills.required_tags)
        where, params = "", []
        if window:
            win = Window.parse(window)
            where = "WHERE charge_period_start_ms >= ? AND charge_period_start_ms < ?"
            params = [win.start_ms, win.end_ms]

        def has(tag: str) -> str:
            return f"coalesce(tags['{tag.replace(chr(39), chr(39) * 2)}'], '') <> ''"

        every = " AND ".join(has(t) for t in tags) or "TRUE"
        per_tag = ", ".join(f"sum(CASE WHEN {has(t)} THEN billed_cost ELSE 0 END)" for t in tags)
        rows = self.store.raw(
            f"SELECT billing_currency, sum(billed_cost), "
            f"sum(CASE WHEN {every} THEN billed_cost ELSE 0 END), {per_tag} "
            f"FROM cost_lines {where} GROUP BY 1 ORDER BY 1",
            params,
        )
        out: dict[str, Any] = {"required_tags": tags, "currencies": []}
        for row in rows:
            currency, total, tagged = row[0], row[1] or Decimal(0), row[2] or Decimal(0)
            share = float(tagged / total) if total else None
            out["currencies"].append(
                {
                    "currency": currency,
                    "billed_cost": float(total),
                    "tagged_cost": float(tagged),
                    "tagged_share": share,
                    "by_tag": {
                        t: (float(v / total) if total else None)
                        for t, v in zip(tags, row[3:], strict=True)
                    },
                }
            )
        amp = " AND " if where else "WHERE "
        untagged = self.store.raw(
            f"SELECT resource_id, provider, service_name, billing_currency, sum(billed_cost) "
            f"FROM cost_lines {where}{amp}NOT ({every}) AND resource_id IS NOT NULL "
            f"GROUP BY ALL ORDER BY 5 DESC, 1 LIMIT {int(top)}",
            params,
        )
        out["largest_untagged"] = [
            {"resource_id": r[0], "provider": r[1], "service": r[2], "currency": r[3],
             "billed_cost": float(r[4])}
            for r in untagged
        ]  # fmt: skip
        return out

    # -- reconciliation (DESIGN 2.9) ----------------------------------------------------
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
        billed spend that is no node of the allocation, by provider and service category."""
        win = self.resolve_window(window, last)
        dims = tuple(normalise_dimension(d) for d in by if d.strip())
        inner = dims if "node" in dims else (*dims, "node")

        def allocate(rules: tuple[NodeRule, ...] = ()) -> CostReport:
            return self.cost(window=f"{win.start.isoformat()},{win.end.isoformat()}",
                             by=list(inner), idle=idle, shared_gpu=shared_gpu,
                             node_buckets=True, bill_rules=rules)  # fmt: skip

        currency = self.settings.currency
        report = allocate()
        ids = dict(self.store.raw("SELECT node_id, resource_id FROM nodes"))
        listed, gpu_hours = node_costs(report.rows)
        target, notes = _bill_targets(ids, listed)
        billed, other, foreign = self._split_bill(win, target, currency)
        for node, cur in sorted(foreign):
            notes.append(
                f"node {node} is billed in {cur}, not {currency}: those lines are "
                "kept apart under other spend, the node stays at list price"
            )

        # a node with no list price but a bill is priced from its bill (DESIGN 2.1, the
        # first source of price) and allocated again, so its rows find their teams
        counts = dict(self.store.raw("SELECT node_id, coalesce(gpu_count, 0) FROM nodes"))
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
        if not self.store.raw("SELECT 1 FROM cost_lines LIMIT 1"):
            notes.insert(0, "no bills ingested (aifinops ingest focus|cur|azure|oci FILE)")
        rows.sort(key=lambda r: (r.key.get(dims[0], "").startswith("__") if dims else False,
                                 -r.list_cost, tuple(r.key.values())))  # fmt: skip
        other.sort(key=lambda o: (o.currency != currency, o.currency, -o.effective_cost,
                                  o.provider, o.service_category))  # fmt: skip
        return ReconciledReport(win, dims, currency, rows, nodes, other, notes + report.notes)

    def _split_bill(
        self, win: Window, target: dict[str, list[tuple[str, Decimal]]], currency: str
    ) -> tuple[dict[str, Decimal], list[OtherSpend], set[tuple[str, str]]]:
        """The bill in the window: EffectiveCost per node (by `target`, key -> shares), the
        rest as other spend, and the (node, currency) pairs billed in another currency."""
        billed: dict[str, Decimal] = {}
        other: dict[tuple[str, str, str], list[Decimal]] = {}
        foreign: set[tuple[str, str]] = set()
        for rid, provider, category, cur, cs, ce, bill, eff in self._bill_in_window(win):
            frac = Decimal(1)
            if cs is not None:  # a line reaching past the window: its share of the window
                frac = Decimal(min(ce, win.end_ms) - max(cs, win.start_ms)) / Decimal(ce - cs)
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

    def _bill_in_window(self, win: Window) -> list[tuple[Any, ...]]:
        """Bill lines overlapping the window, summed exactly: lines inside it per resource,
        provider, category and currency; lines reaching past it also per charge period
        (their start and end, for the share that falls in the window)."""
        s, e = win.start_ms, win.end_ms
        inside = "charge_period_start_ms >= ? AND charge_period_end_ms <= ?"
        return self.store.raw(
            f"""
            SELECT resource_id, provider, service_category, billing_currency,
                   CASE WHEN {inside} THEN NULL ELSE charge_period_start_ms END AS cs,
                   CASE WHEN {inside} THEN NULL ELSE charge_period_end_ms END AS ce,
                   sum(billed_cost), sum(effective_cost)
            FROM cost_lines
            WHERE charge_period_start_ms < ? AND charge_period_end_ms > ?
            GROUP BY ALL
            """,
            [s, e, s, e, e, s],
        )

    # -- exports ------------------------------------------------------------------------
    def export_focus(
        self,
        path: Path,
        *,
        window: str | None = None,
        last: str | None = None,
        step: str = "1h",
    ) -> dict[str, Any]:
        """The allocated chargeback, per workload and step, as a FOCUS 1.2 dataset."""
        from aifinops.outputs.focus_export import ExportRow, focus_table, write_table

        if path.suffix.lower() not in (".csv", ".parquet"):
            raise UsageError("the export is written as .csv or .parquet", where=str(path))
        report = self.cost(window=window, last=last, step=step, by=EXPORT_DIMENSIONS)
        rows = []
        for r in report.rows:
            rows.append(
                ExportRow(
                    start_ms=iso_ms(r.start) or 0, end_ms=iso_ms(r.end) or 0, key=dict(r.key),
                    gpu_hours=r.gpu_hours, cost=r.total_cost, list_cost=r.total_cost,
                    idle_cost=r.idle_cost, waste_cost=r.waste_cost,
                    gpu_efficiency=r.gpu_efficiency,
                )
            )  # fmt: skip
        export = self.settings.export
        table = focus_table(
            rows,
            currency=report.currency,
            account_id=export.billing_account_id,
            account_name=export.billing_account_name,
        )
        write_table(table, path)
        total = sum((r.cost for r in rows), Decimal(0))
        return {
            "path": str(path),
            "rows": table.num_rows,
            "window": [report.window.start.isoformat(), report.window.end.isoformat()],
            "billed_cost": float(total),
            "asset_cost": float(report.asset_cost),
            "currency": report.currency,
        }

    def export_chargeback(
        self, path: Path | None, *, month: str, by: Sequence[str] = ("team",)
    ) -> list[dict[str, Any]]:
        """A plain chargeback table for finance: one row per group (buckets included) for a
        calendar month, costs rounded to the cent only here; rows sum to the asset cost."""
        report = self.cost(window=month_window(month), by=by)
        rows = []
        for r in report.rows:
            eff = r.gpu_efficiency
            rows.append(
                {**{d: r.key[d] for d in by}, "gpu_hours": f"{r.gpu_hours:.4f}",
                 "gpu_cost": f"{r.gpu_cost:.2f}", "cpu_cost": f"{r.cpu_cost:.2f}",
                 "ram_cost": f"{r.ram_cost:.2f}", "idle_cost": f"{r.idle_cost:.2f}",
                 "total_cost": f"{r.total_cost:.2f}", "waste_cost": f"{r.waste_cost:.2f}",
                 "gpu_efficiency": "" if eff is None else f"{eff:.4f}",
                 "currency": report.currency}
            )  # fmt: skip
        rows.append(
            {**{d: "TOTAL" for d in by[:1]}, **{d: "" for d in by[1:]},
             "gpu_hours": f"{sum((r.gpu_hours for r in report.rows), Decimal(0)):.4f}",
             "gpu_cost": "", "cpu_cost": "", "ram_cost": "", "idle_cost": "",
             "total_cost": f"{report.total_cost:.2f}", "waste_cost": "", "gpu_efficiency": "",
             "currency": report.currency}
        )  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(chargeback_csv(rows), encoding="utf-8")
        return rows


EXPORT_DIMENSIONS = (
    "workload", "team", "project", "model", "environment", "cost_center", "owner",
    "namespace", "node", "provider", "region", "instance_type",
)  # fmt: skip


def chargeback_csv(rows: list[dict[str, Any]]) -> str:
    """The rows of `export_chargeback` as CSV text, header first."""
    import csv
    import io

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


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
