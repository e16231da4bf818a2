"""Node prices: which price applies to a node, and how it splits into GPU, CPU and RAM.

Order of trust in `resolve_node_price`, most specific first (DESIGN §2.1, decision 0007):
  1. a price for this very node, by name, provider ID or label (config, OpenCost's custom
     pricing CSV, or the bill for a node reconciliation found without a list price), a
     region-specific rule before a region-less one;
  2. an on-prem model for the node, unless an instance-type override is given;
  3. a user override for the instance type;
  4. a per-GPU price of a node rule, else a user override for the GPU model (per GPU-hour);
  5. the catalog offer for the instance type (fresh price-API offers, then the bundled
     catalog; region and capacity type where known), less a matching discount;
  6. nothing: the node is unpriced and its cost goes to `__unpriced__`; never a default.
The bill itself sits above all of these: reconciliation (DESIGN §2.9) scales the allocation
to each node's billed EffectiveCost. A host known only by its GPUs costs its GPUs (no CPU or
RAM part).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from aifinops.core.money import ZERO

# OpenCost's default unit prices (GCP us-central1), used to carve the CPU and RAM part out
# of a GPU instance price when the catalog has no per-component price.
DEFAULT_CPU_CORE_HOURLY = Decimal("0.031611")
DEFAULT_RAM_GIB_HOURLY = Decimal("0.004237")

_FAMILIES = (
    "GH200",
    "GB200",
    "B200",
    "B100",
    "H200",
    "H100",
    "H800",
    "H20",
    "A100",
    "A800",
    "A40",
    "A30",
    "A10G",
    "A10",
    "A16",
    "A6000",
    "A5000",
    "A4000",
    "L40S",
    "L40",
    "L4",
    "T4",
    "V100",
    "P100",
    "P40",
    "P4",
    "K80",
    "M60",
    "MI300X",
    "MI250X",
    "MI210",
    "RTX4090",
    "RTX3090",
    "3080TI",
    "RTX6000",
    "RTX5000",
    "RTX4000",
)
_MEM = re.compile(r"(\d+)\s*G(?:B|I?B)?\b", re.IGNORECASE)


def normalise_gpu_model(name: str | None) -> str | None:
    """'NVIDIA H100 80GB HBM3', 'H100-SXM5-80GB', 'h100' -> 'H100 80GB' / 'H100'.

    The family is what matters for price; memory is kept when given because the 40 GB and
    80 GB A100 are priced differently.
    """
    if not name:
        return None
    text = name.upper().replace("NVIDIA", " ").replace("TESLA", " ").replace("GEFORCE", " ")
    compact = re.sub(r"[\s_\-]+", " ", text).strip()
    squeezed = compact.replace(" ", "")
    family = next((f for f in _FAMILIES if f in squeezed), None)
    if family is None:
        return compact or None
    mem = None
    for match in _MEM.finditer(compact.replace(family, " ")):
        mem = int(match.group(1))
    alibaba = re.search(family + r"M(\d+)\b", squeezed)  # Alibaba's V100M16, V100M32
    if mem is None and alibaba:
        mem = int(alibaba.group(1))
    return f"{family} {mem}GB" if mem else family


def gpu_model_matches(key: str, model: str | None) -> bool:
    """An override for 'H100' applies to every H100; one for 'A100 80GB' only to those."""
    want, have = normalise_gpu_model(key), normalise_gpu_model(model)
    if want is None or have is None:
        return False
    if want == have:
        return True
    return " " not in want and have.split(" ")[0] == want


def type_key(instance_type: str) -> str:
    """One spelling per instance type: Azure's `Standard_NC24ads_A100_v4` (the node label)
    and `NC24ads A100 v4` (its price lists) are the same size."""
    return re.sub(r"[\s_]+", "", instance_type.lower().removeprefix("standard_"))


def same_gpu(a: str | None, b: str | None) -> bool:
    """Same family, and the same memory where both name it ('T4' is a 'T4 16GB')."""
    x, y = normalise_gpu_model(a), normalise_gpu_model(b)
    if x is None or y is None:
        return False
    fx, _, mx = x.partition(" ")
    fy, _, my = y.partition(" ")
    return fx == fy and (not mx or not my or mx == my)


@dataclass(frozen=True)
class CatalogOffer:
    provider: str
    instance_type: str
    gpu_model: str | None
    gpu_count: int
    vcpus: Decimal
    memory_gib: Decimal
    on_demand_hourly: Decimal
    spot_hourly: Decimal | None
    region: str | None = None
    gpu_component_hourly: Decimal | None = None  # per GPU, when the provider publishes it
    source: str = ""
    as_of: str = ""
    commit_1y_hourly: Decimal | None = None
    commit_3y_hourly: Decimal | None = None
    per_gpu_hourly: Decimal | None = None  # the offer's price per GPU, for comparisons


@dataclass(frozen=True)
class NodeRule:
    """A price for the nodes one fact identifies: their name (`name`), provider ID
    (`provider_id`) or a label (`label:<key>`), optionally in one region. `node_hourly`
    prices the node, `gpu_hourly` each of its GPUs (OpenCost's custom pricing CSV has both)."""

    match: str
    value: str
    node_hourly: Decimal | None = None
    gpu_hourly: Decimal | None = None
    region: str | None = None
    source: str = "config"

    def applies(self, node: NodeFacts) -> bool:
        if self.region and (node.region or "").lower() != self.region.lower():
            return False
        if self.match == "name":
            return node.node_id == self.value
        if self.match == "provider_id":
            rid = node.resource_id or ""
            return bool(rid) and (rid == self.value or self.value.endswith("/" + rid))
        if self.match.startswith("label:"):
            return node.labels.get(self.match[len("label:") :]) == self.value
        return False


@dataclass(frozen=True)
class Discount:
    """A percentage off list (catalog) prices, e.g. an enterprise agreement, for the offers
    of a provider, instance type or GPU model (none given: every catalog price)."""

    percent: Decimal
    provider: str | None = None
    instance_type: str | None = None
    gpu_model: str | None = None

    def applies(self, node: NodeFacts, offer: CatalogOffer) -> bool:
        if self.provider and self.provider.lower() != offer.provider.lower():
            return False
        if self.instance_type and self.instance_type.lower() != offer.instance_type.lower():
            return False
        return not self.gpu_model or same_gpu(self.gpu_model, offer.gpu_model or node.gpu_model)


HOURS_PER_YEAR = Decimal(8760)


@dataclass(frozen=True)
class OnPremModel:
    """What an owned GPU server costs an hour: its purchase price, less the residual value,
    spread over its life; its power at $/kWh x PUE (measured watts where the energy counter
    gives them, else rated); plus an overhead percent (space, support, staff)."""

    purchase_price: Decimal  # per node
    gpus: int
    years: Decimal = Decimal(4)
    residual_percent: Decimal = Decimal(0)
    power_price_kwh: Decimal = Decimal(0)
    pue: Decimal = Decimal(1)
    rated_watts: Decimal = Decimal(0)  # per GPU, when nothing is measured
    overhead_percent: Decimal = Decimal(0)
    node: str | None = None  # which nodes: by name, GPU model or label
    gpu_model: str | None = None
    label: str | None = None  # key=value

    def applies(self, node: NodeFacts) -> bool:
        if self.node is not None:
            return node.node_id == self.node
        if self.label is not None:
            key, _, value = self.label.partition("=")
            return node.labels.get(key) == value
        return self.gpu_model is not None and same_gpu(self.gpu_model, node.gpu_model)

    def capital_per_gpu_hour(self) -> Decimal:
        kept = self.purchase_price * (Decimal(100) - self.residual_percent) / Decimal(100)
        return kept / (self.years * HOURS_PER_YEAR) / max(self.gpus, 1)

    def power_per_gpu_hour(self, watts: Decimal) -> Decimal:
        return watts / Decimal(1000) * self.power_price_kwh * self.pue

    def per_gpu_hour(self, watts: Decimal | None = None) -> Decimal:
        use = self.rated_watts if watts is None else watts
        base = self.capital_per_gpu_hour() + self.power_per_gpu_hour(use)
        return base * (Decimal(100) + self.overhead_percent) / Decimal(100)


@dataclass(frozen=True)
class PriceOverrides:
    instance_types: Mapping[str, Decimal] = field(default_factory=dict)  # $/node-hour
    gpu_models: Mapping[str, Decimal] = field(default_factory=dict)  # $/GPU-hour
    node_rules: tuple[NodeRule, ...] = ()  # first match wins; region-specific rules first
    discounts: tuple[Discount, ...] = ()  # first match wins
    on_prem: tuple[OnPremModel, ...] = ()  # first match wins
    measured_watts: Mapping[str, Decimal] = field(default_factory=dict)  # node -> W per GPU


@dataclass(frozen=True)
class SplitRates:
    cpu_core_hourly: Decimal = DEFAULT_CPU_CORE_HOURLY
    ram_gib_hourly: Decimal = DEFAULT_RAM_GIB_HOURLY


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    instance_type: str | None = None
    gpu_model: str | None = None
    gpu_count: int = 0
    cpu_cores: Decimal | None = None
    memory_gib: Decimal | None = None
    provider: str | None = None
    region: str | None = None
    capacity_type: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_id: str | None = None


@dataclass(frozen=True)
class NodePrice:
    """Hourly prices of one node. `gpu_hourly` is per GPU; CPU and RAM are node totals."""

    node_id: str
    priced: bool
    source: str
    gpu_hourly: Decimal = ZERO
    cpu_hourly: Decimal = ZERO
    ram_hourly: Decimal = ZERO
    reason: str = ""


class Catalog:
    """Offers indexed by instance type; lookups prefer the node's provider and region."""

    def __init__(self, offers: Iterable[CatalogOffer]):
        self.offers = list(offers)
        self._by_type: dict[str, list[CatalogOffer]] = {}
        for offer in self.offers:
            if offer.instance_type:
                self._by_type.setdefault(type_key(offer.instance_type), []).append(offer)

    def __len__(self) -> int:
        return len(self.offers)

    def find(
        self,
        instance_type: str,
        provider: str | None = None,
        region: str | None = None,
        gpu_model: str | None = None,
    ) -> CatalogOffer | None:
        """The offer for a node: the provider's offer for its very region first, then a
        region-less one (it answers any region), else any offer of the type."""
        offers = self._by_type.get(type_key(instance_type), [])
        if gpu_model and len({o.gpu_model for o in offers}) > 1:
            # one machine type with different GPUs attached (GCP n1-*): the node's GPU decides
            offers = [o for o in offers if same_gpu(o.gpu_model, gpu_model)]
        if provider:
            offers = [o for o in offers if o.provider.lower() == provider.lower()] or offers
        if region:
            exact = [o for o in offers if o.region and o.region.lower() == region.lower()]
            if exact:
                return exact[0]
        unregioned = [o for o in offers if not o.region]
        candidates = unregioned or offers
        return candidates[0] if candidates else None


def split_instance_price(
    price: Decimal,
    gpu_count: int,
    cpu_cores: Decimal,
    memory_gib: Decimal,
    rates: SplitRates,
    gpu_component_hourly: Decimal | None = None,
) -> tuple[Decimal, Decimal, Decimal]:
    """Split a node-hour price into (per-GPU, CPU total, RAM total) hourly prices.

    With a published per-GPU component, the GPUs take that and CPU/RAM share the rest by
    the unit rates. Otherwise CPU and RAM are priced at the unit rates and the GPUs take the
    remainder; when the rates would exceed the price, CPU and RAM shrink to fit.
    """
    cpu = cpu_cores * rates.cpu_core_hourly
    ram = memory_gib * rates.ram_gib_hourly
    if gpu_count <= 0:
        total = cpu + ram
        if total <= 0:
            return ZERO, price, ZERO
        return ZERO, price * cpu / total, price - price * cpu / total
    if gpu_component_hourly is not None and gpu_component_hourly * gpu_count <= price:
        gpu_part = gpu_component_hourly * gpu_count
        rest = price - gpu_part
        total = cpu + ram
        cpu_part = rest * cpu / total if total > 0 else rest
        return gpu_component_hourly, cpu_part, rest - cpu_part
    if cpu + ram > price:
        scale = price / (cpu + ram)
        cpu, ram = cpu * scale, price - cpu * scale
    gpu_part = price - cpu - ram
    return gpu_part / gpu_count, cpu, ram


def resolve_node_price(
    node: NodeFacts, catalog: Catalog, overrides: PriceOverrides, rates: SplitRates = SplitRates()
) -> NodePrice:
    """The price of one node, with its source, or an unpriced result with the reason.

    Trust, highest first: a rule for this very node (name, provider ID, label; OpenCost's
    custom pricing; the bill), an on-prem model, an instance-type override, a GPU-model
    override (or a GPU rule), the catalog less any discount; else unpriced."""
    cores = node.cpu_cores or ZERO
    mem = node.memory_gib or ZERO
    rules = sorted(overrides.node_rules, key=lambda r: r.region is None)  # regional first
    node_rule = next((r for r in rules if r.node_hourly is not None and r.applies(node)), None)
    gpu_rule = next((r for r in rules if r.gpu_hourly is not None and r.applies(node)), None)
    gpu_override = next(
        (
            price
            for key, price in overrides.gpu_models.items()
            if gpu_model_matches(key, node.gpu_model)
        ),
        None,
    )
    inst_override = None
    if node.instance_type:
        inst_override = next(
            (
                p
                for k, p in overrides.instance_types.items()
                if k.lower() == node.instance_type.lower()
            ),
            None,
        )
    offer = (
        catalog.find(node.instance_type, node.provider, node.region, node.gpu_model)
        if node.instance_type
        else None
    )
    if offer is not None:
        cores = node.cpu_cores if node.cpu_cores else offer.vcpus
        mem = node.memory_gib if node.memory_gib else offer.memory_gib

    gpus = node.gpu_count or (offer.gpu_count if offer else 0)
    if gpu_rule is not None and gpu_rule.gpu_hourly is not None:
        gpu_override = gpu_rule.gpu_hourly
    if node_rule is not None and node_rule.node_hourly is not None:
        label = f"{node_rule.source}:{node_rule.match}={node_rule.value}"
        if gpu_rule is not None and gpu_rule.gpu_hourly is not None:
            # the node's own price covers CPU and RAM; its GPUs are priced on top
            total = node_rule.node_hourly
            _, cpu_h, ram_h = split_instance_price(total, 0, cores, mem, rates)
            return NodePrice(node.node_id, True, label, gpu_rule.gpu_hourly, cpu_h, ram_h)
        gpu_h, cpu_h, ram_h = split_instance_price(node_rule.node_hourly, gpus, cores, mem, rates)
        return NodePrice(node.node_id, True, label, gpu_h, cpu_h, ram_h)
    on_prem = next((m for m in overrides.on_prem if m.applies(node)), None)
    if on_prem is not None and inst_override is None:
        watts = overrides.measured_watts.get(node.node_id)
        kind = "measured" if watts is not None else "rated"
        return NodePrice(node.node_id, True, f"on-prem:{kind}-power", on_prem.per_gpu_hour(watts))
    if inst_override is not None:
        if gpu_override is not None and gpu_override * gpus <= inst_override:
            gpu_h, cpu_h, ram_h = split_instance_price(
                inst_override, gpus, cores, mem, rates, gpu_component_hourly=gpu_override
            )
        else:
            gpu_h, cpu_h, ram_h = split_instance_price(inst_override, gpus, cores, mem, rates)
        return NodePrice(
            node.node_id, True, f"override:instance_type:{node.instance_type}", gpu_h, cpu_h, ram_h
        )
    if gpu_override is not None:
        cpu_h = ram_h = ZERO
        if offer is not None:
            _, cpu_h, ram_h = split_instance_price(
                _offer_price(offer, node.capacity_type),
                gpus,
                cores,
                mem,
                rates,
                offer.gpu_component_hourly,
            )
        return NodePrice(
            node.node_id, True, f"override:gpu_model:{node.gpu_model}", gpu_override, cpu_h, ram_h
        )
    if offer is not None:
        price = _offer_price(offer, node.capacity_type)
        component = offer.gpu_component_hourly
        kind = "spot" if _is_spot(node.capacity_type) and offer.spot_hourly else "on-demand"
        source = f"catalog:{offer.provider}:{offer.instance_type}:{kind}"
        discount = next((d for d in overrides.discounts if d.applies(node, offer)), None)
        if discount is not None:  # off the list price, the GPUs' part included
            keep = (Decimal(100) - discount.percent) / Decimal(100)
            price *= keep
            component = component * keep if component is not None else None
            source += f":discount:{discount.percent}%"
        gpu_h, cpu_h, ram_h = split_instance_price(price, gpus, cores, mem, rates, component)
        return NodePrice(node.node_id, True, source, gpu_h, cpu_h, ram_h)
    if node.instance_type:
        reason = f"unknown instance type {node.instance_type!r}"
    elif node.gpu_model:
        reason = f"no price for GPU model {node.gpu_model!r} and no instance type"
    else:
        reason = "no instance type and no GPU model"
    return NodePrice(node.node_id, False, "none", reason=reason)


def _is_spot(capacity_type: str | None) -> bool:
    return (capacity_type or "").lower() in {"spot", "preemptible", "interruptible"}


def _offer_price(offer: CatalogOffer, capacity_type: str | None) -> Decimal:
    if _is_spot(capacity_type) and offer.spot_hourly is not None:
        return offer.spot_hourly
    return offer.on_demand_hourly


def price_hint(instance_type: str | None, gpu_model: str | None) -> str:
    """The config line that would price an unpriced node (or what to do when nothing
    about it could be priced: no instance type and no GPU model known)."""
    if instance_type:
        return f'prices: {{instance_types: {{"{instance_type}": <USD per node-hour>}}}}'
    if gpu_model:
        return f'prices: {{gpu_models: {{"{gpu_model}": <USD per GPU-hour>}}}}'
    return (
        "its GPU model is unknown: ingest its Kubernetes node object, or its nvidia-smi "
        "-q -x inventory, or price it by name (prices: {nodes: {NODE: <USD per node-hour>}})"
    )
