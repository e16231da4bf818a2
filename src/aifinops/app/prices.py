"""Prices: the catalog in force (fresh price-API answers first, then the bundled catalog),
each node's price, catalog queries, what is unpriced, and energy."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from aifinops.app.context import AppContext
from aifinops.app.ingest import IngestResult
from aifinops.core.pricing import (
    Catalog,
    CatalogOffer,
    NodeFacts,
    NodePrice,
    NodeRule,
    price_hint,
    resolve_node_price,
    same_gpu,
    type_key,
)
from aifinops.core.windows import Window, parse_duration
from aifinops.errors import UsageError
from aifinops.sources.prices.catalog import (
    bundled_offers,
    file_offers,
    offers_from_json,
    offers_to_json,
)
from aifinops.store import facts as stored
from aifinops.store import state
from aifinops.store.units import energy_increases

ANY_REGION = "any region"  # how an offer without a region is marked: it answers any


class Prices:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.notes: list[str] = []  # what the cost report should say about prices
        self._catalog: Catalog | None = None
        # price-API answers a read-only store could not cache: (provider, fetched_ms, json)
        self._unsaved: list[tuple[str, int, str]] = []

    @property
    def catalog(self) -> Catalog:
        """Fresh price-API offers first (their regions are exact), then the price lists of
        `prices.catalog_files`, then the bundled catalog.
        Configured APIs whose cache has expired are asked again once; when they cannot be
        reached the bundled catalog is used and `notes` says so."""
        api = self.ctx.settings.prices.api
        if self._catalog is not None and not self._expired():
            return self._catalog
        fresh: list[CatalogOffer] = []
        if api.providers:
            cached = self._cached_offers()
            stale = [p for p in api.providers if p not in cached]
            if stale:
                self.refresh(stale)
                cached = self._cached_offers()
            for provider in api.providers:
                fresh += cached.get(provider, [])
        own = [o for path in self.ctx.settings.prices.catalog_files for o in file_offers(path)]
        self._catalog = Catalog(fresh + own + bundled_offers())
        return self._catalog

    def _ttl_ms(self) -> int:
        ttl = parse_duration(self.ctx.settings.prices.api.ttl, what="prices.api.ttl")
        return int(ttl.total_seconds() * 1000)

    def _expired(self) -> bool:
        """Whether a configured API's cached answer has outlived its ttl since it was read."""
        if not self.ctx.settings.prices.api.providers:
            return False
        return set(self.ctx.settings.prices.api.providers) - set(self._cached_offers()) != set()

    def _cached_offers(self) -> dict[str, list[CatalogOffer]]:
        now, ttl = self.ctx.now_ms(), self._ttl_ms()
        return {
            provider: offers_from_json(payload)
            for provider, fetched, payload in state.cached_prices(self.ctx.store) + self._unsaved
            if now - fetched <= ttl
        }

    def refresh(self, providers: Sequence[str] | None = None) -> list[IngestResult]:
        """Ask the configured price APIs again and cache what they say."""
        from aifinops.sources.prices import price_apis

        api = self.ctx.settings.prices.api
        bundled = bundled_offers()
        types = stored.instance_types(self.ctx.store)
        wanted = list(providers or api.providers)
        unknown = sorted(set(wanted) - set(price_apis.PROVIDERS))
        if unknown:
            raise UsageError(f"no price API for {', '.join(unknown)}", where="--provider",
                             hint=", ".join(price_apis.PROVIDERS))  # fmt: skip
        results = []
        for provider in wanted:
            result = IngestResult(f"prices:{provider}", provider, "unchanged")
            try:
                mine = sorted({t for p, t in types if p == provider})
                offers = price_apis.PROVIDERS[provider](api, mine, bundled)
            except Exception as error:  # offline, refused, malformed: say so, keep going
                as_of = max((o.as_of for o in bundled if o.provider == provider), default="")
                note = (
                    f"price API for {provider} unreachable ({error}); the bundled catalog "
                    f"(prices as of {as_of or 'unknown'}) is used"
                )
                self.notes.append(note)
                result.status, result.notes = "failed", [note]
                results.append(result)
                continue
            if self.ctx.store.read_only:  # a read (cost, prices show) beside a writer
                self._unsaved.append((provider, self.ctx.now_ms(), offers_to_json(offers)))
                note = (f"price API answer for {provider} used but not cached: the store is "
                        "open read-only (`aifinops prices refresh` caches it)")  # fmt: skip
                self.notes.append(note)
                result.notes = [note]
            else:
                state.cache_prices(self.ctx.store, provider, self.ctx.now_ms(),
                                   offers_to_json(offers))  # fmt: skip
            result.status, result.rows = "loaded", len(offers)
            results.append(result)
        self._catalog = None
        return results

    def node_prices(
        self, bill_rules: tuple[NodeRule, ...] = ()
    ) -> tuple[list[NodePrice], pa.Table]:
        """Every node's price; `bill_rules` (from reconciliation) come first."""
        from aifinops.sources.prices.custom_pricing import read_custom_pricing

        nodes = stored.nodes(self.ctx.store)
        config = self.ctx.settings.prices
        extra: tuple[NodeRule, ...] = bill_rules
        if config.custom_pricing_csv:
            rules, self.notes = read_custom_pricing(Path(config.custom_pricing_csv))
            extra += tuple(rules)
        watts = self.measured_watts() if config.on_prem else {}
        overrides, rates, catalog = config.overrides(extra, watts), config.rates(), self.catalog
        prices = [
            resolve_node_price(node_facts(row), catalog, overrides, rates)
            for row in nodes.to_pylist()
        ]
        return prices, nodes

    def offers(
        self,
        *,
        gpu: str | None = None,
        instance_type: str | None = None,
        provider: str | None = None,
        region: str | None = None,
        spot: bool = False,
    ) -> list[dict[str, Any]]:
        """Catalog offers matching the filters, cheapest per GPU-hour first (spot prices
        with `spot`; offers without one are left out then). A region-less offer answers any
        region (`region_note: "any region"`); with `region`, an offer for that very region
        stands in for the region-less one of the same provider and type, as in
        `Catalog.find`."""
        matching = [
            o
            for o in self.catalog.offers
            if (not gpu or same_gpu(o.gpu_model, gpu))
            and (not instance_type or type_key(o.instance_type) == type_key(instance_type))
            and (not provider or o.provider.lower() == provider.lower())
            and (not region or not o.region or o.region.lower() == region.lower())
        ]
        regional = {_kind(o) for o in matching if o.region and o.instance_type}
        out = []
        for o in matching:
            if region and not o.region and _kind(o) in regional:
                continue
            hourly = o.spot_hourly if spot else o.on_demand_hourly
            if hourly is None:
                continue
            out.append(
                {"provider": o.provider, "region": o.region,
                 "instance_type": o.instance_type or None, "gpu_model": o.gpu_model,
                 "gpu_count": o.gpu_count, "vcpus": _f(o.vcpus or None),
                 "memory_gib": _f(o.memory_gib or None),
                 "on_demand_hourly": float(o.on_demand_hourly), "spot_hourly": _f(o.spot_hourly),
                 "commit_1y_hourly": _f(o.commit_1y_hourly),
                 "commit_3y_hourly": _f(o.commit_3y_hourly),
                 "per_gpu_hourly": float(hourly / max(o.gpu_count, 1)),
                 "source": o.source, "as_of": o.as_of,
                 "region_note": None if o.region else ANY_REGION}
            )  # fmt: skip
        out.sort(key=lambda r: (r["per_gpu_hourly"], r["provider"], r["instance_type"] or ""))
        return out

    def missing(self) -> list[dict[str, Any]]:
        """Nodes in the store that no price covers, grouped by what would price them."""
        prices, nodes = self.node_prices()
        facts_of = {r["node_id"]: r for r in nodes.to_pylist()}
        groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        for p in prices:
            if p.priced:
                continue
            n = facts_of[p.node_id]
            g = groups.setdefault(
                (n["instance_type"], n["gpu_model"]),
                {"instance_type": n["instance_type"], "gpu_model": n["gpu_model"], "nodes": [],
                 "reason": p.reason},
            )  # fmt: skip
            g["nodes"].append(p.node_id)
        for g in groups.values():
            g["config"] = price_hint(g["instance_type"], g["gpu_model"])
        return sorted(
            groups.values(),
            key=lambda g: (g["instance_type"] is None, g["instance_type"] or "",
                           g["gpu_model"] or ""),
        )  # fmt: skip

    def measured_watts(self) -> dict[str, Decimal]:
        """Average power per GPU of each node, from its energy counter (all readings)."""
        per_node: dict[str, list[tuple[float, int]]] = {}
        for r in energy_increases(self.ctx.store).to_pylist():
            if r["span_ms"]:
                per_node.setdefault(r["node_id"], []).append((r["energy_mj"], r["span_ms"]))
        out = {}
        for node, parts in per_node.items():
            mj = sum(p[0] for p in parts)
            ms = sum(p[1] for p in parts) / len(parts)  # per GPU: the average span
            out[node] = Decimal(str(round(mj / ms / len(parts), 6))) if ms else Decimal(0)
        return out

    def energy(self, win: Window) -> list[dict[str, Any]]:
        """Energy per node in the window, from the GPUs' energy counters, and its power cost
        where an on-prem model prices the node's power ($/kWh x PUE)."""
        facts_of = {r["node_id"]: r for r in stored.nodes(self.ctx.store).to_pylist()}
        models = self.ctx.settings.prices.overrides().on_prem
        rows: dict[str, dict[str, Any]] = {}
        for r in energy_increases(self.ctx.store, win.start_ms, win.end_ms).to_pylist():
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


def node_facts(row: dict[str, Any]) -> NodeFacts:
    """A stored node row as the pricing rules see it."""
    return NodeFacts(
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


def _kind(offer: CatalogOffer) -> tuple[str, str, str | None]:
    """What one offer sells, whatever its region: provider, instance type and GPU."""
    return offer.provider, type_key(offer.instance_type), offer.gpu_model


def _f(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
