"""Settings precedence, and the pure price rules (names, order of trust, splitting)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from aifinops.config import load_settings
from aifinops.core.pricing import (
    Catalog,
    CatalogOffer,
    NodeFacts,
    PriceOverrides,
    SplitRates,
    gpu_model_matches,
    normalise_gpu_model,
    resolve_node_price,
    split_instance_price,
)
from aifinops.core.windows import Window, parse_duration
from aifinops.errors import ConfigError, UsageError


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("db: file.duckdb\nallocation: {idle: even, step: 1d}\n")
    s = load_settings(
        cfg, env={"AIFINOPS__ALLOCATION__IDLE": "weighted"}, flags={"db": "flag.duckdb"}
    )
    assert (s.db, s.allocation.idle.value, s.allocation.step) == ("flag.duckdb", "weighted", "1d")
    assert load_settings(cfg, env={"AIFINOPS_DB": "env.duckdb"}).db == "env.duckdb"


def test_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prices: {gpu_models: {H100: -1}}\n")
    with pytest.raises(ConfigError, match=r"prices\.gpu_models"):
        load_settings(cfg, env={})
    cfg.write_text("prices: {gpu_modles: {H100: 1}}\n")
    with pytest.raises(ConfigError, match="gpu_modles"):
        load_settings(cfg, env={})


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 80GB"),
        ("H100-SXM5-80GB", "H100 80GB"),
        ("h100", "H100"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("A100 (80 GB)", "A100 80GB"),
        ("Tesla T4", "T4"),
        ("NVIDIA-A10G", "A10G"),
        ("NVIDIA L40S", "L40S"),
    ],
)
def test_gpu_names(name: str, model: str) -> None:
    assert normalise_gpu_model(name) == model


def test_override_matching() -> None:
    assert gpu_model_matches("H100", "NVIDIA H100 80GB HBM3")
    assert gpu_model_matches("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB")
    assert not gpu_model_matches("A100 80GB", "NVIDIA A100-SXM4-40GB")


def test_split_by_unit_rates() -> None:
    # $32.77, 8 GPUs, 96 cores, 1152 GiB: CPU 96 x 0.031611 = 3.034656;
    # RAM 1152 x 0.004237 = 4.881024; GPUs (32.77 - 7.91568) / 8 = 3.10679 each
    gpu, cpu, ram = split_instance_price(
        Decimal("32.77"), 8, Decimal(96), Decimal(1152), SplitRates()
    )
    assert (gpu, cpu, ram) == (Decimal("3.10679"), Decimal("3.034656"), Decimal("4.881024"))


def test_order_of_trust() -> None:
    offer = CatalogOffer(
        "aws", "g5.xlarge", "A10G", 1, Decimal(4), Decimal(16), Decimal("1.01"), Decimal("0.30")
    )
    cat = Catalog([offer])
    node = NodeFacts(
        "n",
        instance_type="g5.xlarge",
        gpu_model="NVIDIA A10G",
        gpu_count=1,
        cpu_cores=Decimal(4),
        memory_gib=Decimal(16),
        capacity_type="spot",
    )
    spot = resolve_node_price(node, cat, PriceOverrides())
    assert spot.source == "catalog:aws:g5.xlarge:spot"
    assert spot.gpu_hourly + spot.cpu_hourly + spot.ram_hourly == Decimal("0.30")
    by_gpu = resolve_node_price(node, cat, PriceOverrides(gpu_models={"A10G": Decimal(1)}))
    assert by_gpu.gpu_hourly == 1 and by_gpu.source.startswith("override:gpu_model")
    by_type = resolve_node_price(
        node,
        cat,
        PriceOverrides(instance_types={"G5.XLARGE": Decimal(2)}, gpu_models={"A10G": Decimal(1)}),
    )
    assert by_type.gpu_hourly + by_type.cpu_hourly + by_type.ram_hourly == 2
    bare = resolve_node_price(
        NodeFacts("h", gpu_model="NVIDIA B200", gpu_count=8), cat, PriceOverrides()
    )
    assert (
        not bare.priced
        and bare.reason == "no price for GPU model 'NVIDIA B200' and no instance type"
    )


def test_windows() -> None:
    w = Window.parse("2026-11-16,2026-11-23")
    assert (w.end - w.start).days == 7 and len(w.steps(parse_duration("1d"))) == 7
    with pytest.raises(UsageError):
        Window.parse("2026-11-23,2026-11-16")
