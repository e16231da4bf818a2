"""The store's sizes and its retention: `aifinops store stats|compact` and the server's
`compact` job. Raw samples are deleted only where their hourly roll-up holds them, hourly
roll-ups only where the daily does (store/rollups.py; docs/retention.md)."""

from __future__ import annotations

from typing import Any

from aifinops.app.context import AppContext
from aifinops.core.windows import from_ms
from aifinops.store import rollups


class Retention:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def _expiries(self) -> list[rollups.Expiry]:
        keep = self.ctx.settings.retention
        return rollups.expiries(
            self.ctx.now_ms(),
            keep.kept_ms("samples"),
            keep.kept_ms("hourly"),
            keep.kept_ms("daily"),
        )

    def _settings(self) -> dict[str, str]:
        keep = self.ctx.settings.retention
        return {"samples": keep.samples, "hourly": keep.hourly, "daily": keep.daily}

    def stats(self) -> dict[str, Any]:
        """Per table: its rows, its size, the span of its rows (where they have times),
        and how many rows retention would remove now."""
        store = self.ctx.store
        expiries = {e.table: e for e in self._expiries()}
        tables = []
        for name in rollups.store_tables(store):
            row: dict[str, Any] = {"table": name, "rows": store.count(name),
                                   "bytes": store.table_bytes(name)}  # fmt: skip
            span = rollups.span(store, name) if "ts_ms" in store.table(name).columns else None
            row["first"] = _iso(span[0]) if span else None
            row["last"] = _iso(span[1]) if span else None
            expiry = expiries.get(name)
            row["horizon"] = _iso(expiry.horizon_ms) if expiry else None
            row["removable"] = rollups.expired_rows(store, expiry) if expiry else 0
            tables.append(row)
        return {"now": _iso(self.ctx.now_ms()), "retention": self._settings(), "tables": tables}

    def compact(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Apply retention (raw, then hourly, then daily rows past their horizons, each where
        the coarser roll-up holds it) and merge the roll-ups' rows of one key into one, in
        one transaction; then give the space back. `dry_run` counts and changes nothing."""
        store = self.ctx.store
        out: list[dict[str, Any]] = []
        with store.transaction():
            merged = rollups.merge_rows(store, dry_run=dry_run)
            for expiry in self._expiries():
                if dry_run:
                    removed = rollups.expired_rows(store, expiry)
                else:
                    removed = rollups.delete_expired(store, expiry)
                out.append({"table": expiry.table,
                            "horizon": _iso(expiry.horizon_ms) if expiry.horizon_ms else None,
                            "removed": removed, "merged": merged.get(expiry.table, 0)})  # fmt: skip
        if not dry_run:
            store.reclaim()
        return {"now": _iso(self.ctx.now_ms()), "dry_run": dry_run,
                "retention": self._settings(), "tables": out,
                "removed": sum(r["removed"] for r in out),
                "merged": sum(r["merged"] for r in out)}  # fmt: skip


def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_ms(ms).isoformat().replace("+00:00", "Z")
