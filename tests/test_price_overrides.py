"""Prices for particular nodes (name, provider ID, label; OpenCost's custom pricing CSV as
is) and discounts off list prices."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.pricing import (
    Catalog,
    CatalogOffer,
    Discount,
    NodeFacts,
    NodeRule,
    PriceOverrides,
    SplitRates,
    resolve_node_price,
)
from aifinops.errors import InputError
from aifinops.sources.prices.custom_pricing import read_custom_pricing

DATA = Path(__file__).parent / "data" / "opencost-pricing"
D = Decimal
RATES = SplitRates(D("0.03"), D("0.004"))
P4D = CatalogOffer("aws", "p4d.24xlarge", "A100 40GB", 8, D(96), D(1152), D("32.77"), D("9.83"))


def _total(p: Any, gpus: int) -> Decimal:
    return p.gpu_hourly * gpus + p.cpu_hourly + p.ram_hourly


def test_opencost_csv_as_is() -> None:
    rules, notes = read_custom_pricing(DATA / "pricing_schema.csv")
    assert [(r.match, r.value, r.node_hourly, r.gpu_hourly) for r in rules] == [
        ("name", "gke-standard-cluster-1-pool-1-91dc432d-cg69", D("0.1337"), None),
        ("label:nvidia.com/gpu_type", "Quadro_RTX_4000", None, D("0.75")),
        ("label:gpu.nvidia.com/class", "Quadro_RTX_4001", None, D("0.80")),
    ]
    assert notes == []
    rules, _ = read_custom_pricing(DATA / "pricing_schema_special_char.csv")
    assert rules[0].match == "label:metadata.label.servers.com/label"  # the Slack link undone
    rules, notes = read_custom_pricing(DATA / "pricing_schema_pv.csv")
    assert rules == [] and notes == [
        f"{DATA / 'pricing_schema_pv.csv'}:2: volume prices are not GPU costs; skipped"
    ]


def test_region_rules_win_over_regionless_ones() -> None:
    rules, _ = read_custom_pricing(DATA / "pricing_schema_region.csv")
    cat = Catalog([])

    def price(region: str | None) -> Decimal:
        node = NodeFacts("n", cpu_cores=D(4), memory_gib=D(16), region=region,
                         resource_id="gke-standard-cluster-1-pool-1-91dc432d-cg69")  # fmt: skip
        p = resolve_node_price(node, cat, PriceOverrides(node_rules=tuple(rules)), RATES)
        return _total(p, 0)

    assert price("regiontwo") == D("0.1338")
    assert price("regionone") == D("0.1337")
    assert price("elsewhere") == D("0.1339")


def test_label_rules_price_node_and_gpus(tmp_path: Path) -> None:
    rules, _ = read_custom_pricing(DATA / "pricing_schema_mixed_gpu_ondemand.csv")
    labels = {"TestClusterUsage": "Reserved", "nvidia.com/gpu_type": "a100-reserved"}
    node = NodeFacts("n", gpu_count=2, cpu_cores=D(8), memory_gib=D(64),
                     instance_type="p4d.24xlarge", labels=labels)  # fmt: skip
    p = resolve_node_price(node, Catalog([P4D]), PriceOverrides(node_rules=tuple(rules)), RATES)
    # the reserved node row (0.654795) for the node, the reserved GPU row (1) per GPU
    assert (
        p.source
        == "custom-pricing:pricing_schema_mixed_gpu_ondemand.csv:label:TestClusterUsage=Reserved"
    )
    assert p.gpu_hourly == D(1) and p.cpu_hourly + p.ram_hourly == D("0.654795")
    assert _total(p, 2) == D("2.654795")


def test_a_node_rule_beats_an_instance_type_override() -> None:
    node = NodeFacts("gpu-7", instance_type="p4d.24xlarge", gpu_count=8, cpu_cores=D(96),
                     memory_gib=D(1152))  # fmt: skip
    overrides = PriceOverrides(
        instance_types={"p4d.24xlarge": D("30")},
        node_rules=(NodeRule("name", "gpu-7", node_hourly=D("12")),),
    )
    p = resolve_node_price(node, Catalog([P4D]), overrides, RATES)
    assert _total(p, 8) == D("12") and p.source == "config:name=gpu-7"


def test_discount_off_list_prices_gpus_included() -> None:
    node = NodeFacts("a", instance_type="p4d.24xlarge", provider="aws", gpu_count=8)
    plain = resolve_node_price(node, Catalog([P4D]), PriceOverrides(), RATES)
    cut = PriceOverrides(discounts=(Discount(D(20), provider="aws"),))
    p = resolve_node_price(node, Catalog([P4D]), cut, RATES)
    assert _total(plain, 8) == D("32.77")
    assert _total(p, 8) == D("26.216")  # 32.77 x 0.8
    assert p.gpu_hourly < plain.gpu_hourly and p.source.endswith(":discount:20%")
    other = PriceOverrides(discounts=(Discount(D(20), provider="gcp"),))
    assert _total(resolve_node_price(node, Catalog([P4D]), other, RATES), 8) == D("32.77")


def test_config_and_csv_reach_the_engine(make_service: Any, tmp_path: Path) -> None:
    from aifinops.sources import facts

    csv_path = tmp_path / "custom.csv"
    csv_path.write_text((DATA / "pricing_schema.csv").read_text())
    pool = {"label": "acme.io/pool", "value": "reserved", "gpu_hourly": 2.5}
    svc = make_service(
        {"prices": {"custom_pricing_csv": str(csv_path), "node_labels": [pool],
                    "discounts": [{"percent": 10, "instance_type": "p4d.24xlarge"}]}}
    )  # fmt: skip
    nodes = [
        {"node_id": "gke-standard-cluster-1-pool-1-91dc432d-cg69", "gpu_count": 0,
         "cpu_cores": 4.0, "memory_gib": 16.0, "labels": {}, "source": "kubernetes"},
        {"node_id": "quadro", "gpu_count": 1, "labels": {"nvidia.com/gpu_type": "Quadro_RTX_4000"},
         "source": "kubernetes"},
        {"node_id": "pool", "gpu_count": 4, "labels": {"acme.io/pool": "reserved"},
         "source": "kubernetes"},
        {"node_id": "p4d", "instance_type": "p4d.24xlarge", "provider": "aws", "gpu_count": 8,
         "labels": {}, "source": "kubernetes"},
    ]  # fmt: skip
    svc.store.upsert_arrow("nodes", facts.rows_table(nodes, facts.NODES), "node_id")
    prices = {p.node_id: p for p in svc.node_prices()[0]}
    assert _total(prices["gke-standard-cluster-1-pool-1-91dc432d-cg69"], 0) == D("0.1337")
    assert prices["quadro"].gpu_hourly == D("0.75")
    assert prices["pool"].gpu_hourly == D("2.5")
    assert _total(prices["p4d"], 8) == D("32.77") * D("0.9")


def test_bad_custom_pricing_csv(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,price\nx,1\n")
    with pytest.raises(InputError, match="not an OpenCost custom pricing CSV"):
        read_custom_pricing(bad)
    odd = tmp_path / "odd.csv"
    odd.write_text(
        "EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,"
        "MarketPriceHourly,Version\n"
        ",n1,,node,metadata.name,,abc,\n,n2,,node,metadata.name,,0.5,\n"
    )
    rules, notes = read_custom_pricing(odd)
    assert [r.value for r in rules] == ["n2"]
    assert notes == [f"{odd}:2: price 'abc' is not a number; skipped"]
