"""`aifinops prices show|compare|missing` on the bundled catalog and a store."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from aifinops.core.pricing import same_gpu
from aifinops.sources import facts
from aifinops.sources.prices.catalog import bundled_offers


def test_compare_is_cheapest_first_and_only_that_gpu(cli: Any, tmp_path: Path) -> None:
    out = cli("prices", "compare", "--gpu", "A100", "--spot", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    # worked out from the catalog rows themselves: every A100 offer with a spot price
    expected = sorted(
        float(o.spot_hourly) / o.gpu_count
        for o in bundled_offers()
        if o.spot_hourly is not None and same_gpu(o.gpu_model, "A100")
    )
    assert [r["per_gpu_hourly"] for r in rows] == expected and len(rows) >= 5
    assert all(r["gpu_model"].startswith("A100") for r in rows)
    keys = {"provider", "region", "instance_type", "gpu_model", "gpu_count", "on_demand_hourly",
            "spot_hourly", "per_gpu_hourly", "source", "as_of"}  # fmt: skip
    assert keys <= set(rows[0])


def test_show_an_instance_type_as_csv(cli: Any, tmp_path: Path) -> None:
    out = cli("prices", "show", "--instance-type", "p4d.24xlarge", "--format", "csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    # the region-less offer, besides one row per region where a regional price is known
    (row,) = [r for r in rows if not r["region"]]
    assert len(rows) > 1 and all(r["instance_type"] == "p4d.24xlarge" for r in rows)
    assert (row["provider"], row["gpu_model"], row["gpu_count"]) == ("aws", "A100 40GB", "8")
    assert Decimal(row["on_demand_hourly"]) == Decimal("32.77")
    assert Decimal(row["per_gpu_hourly"]) == Decimal("32.77") / 8


def test_missing_lists_what_would_price_the_unpriced(
    make_service: Any, cli: Any, tmp_path: Path
) -> None:
    svc = make_service(name="m.duckdb")
    nodes = [
        {"node_id": "n1", "instance_type": "p5e.48xlarge", "gpu_model": "H200", "gpu_count": 8,
         "provider": "aws", "labels": {}, "source": "kubernetes"},
        {"node_id": "n2", "instance_type": "p5e.48xlarge", "gpu_model": "H200", "gpu_count": 8,
         "provider": "aws", "labels": {}, "source": "kubernetes"},
        {"node_id": "n3", "gpu_model": "Mystery GPU", "gpu_count": 1, "labels": {},
         "source": "nvidia-smi"},
        {"node_id": "n4", "instance_type": "p4d.24xlarge", "gpu_count": 8, "labels": {},
         "source": "kubernetes"},
    ]  # fmt: skip
    svc.store.upsert_arrow("nodes", facts.rows_table(nodes, facts.NODES), "node_id")
    svc.close()
    out = cli("--db", str(tmp_path / "m.duckdb"), "prices", "missing", "--format", "json",
              cwd=tmp_path)  # fmt: skip
    rows = json.loads(out.stdout)
    assert [(r["instance_type"], r["gpu_model"], r["nodes"]) for r in rows] == [
        ("p5e.48xlarge", "H200", ["n1", "n2"]),
        (None, "Mystery GPU", ["n3"]),
    ]
    assert rows[0]["config"] == 'prices: {instance_types: {"p5e.48xlarge": <USD per node-hour>}}'
    assert rows[1]["config"] == 'prices: {gpu_models: {"Mystery GPU": <USD per GPU-hour>}}'
