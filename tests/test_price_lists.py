"""A price list of one's own (`prices.catalog_files`): negotiated and committed prices in
the bundled catalog's columns, used before the bundled catalog — so `commitments` can
answer for a fleet whose price APIs are not configured (the bundled catalog has no
reserved prices).

One p5.48xlarge (8 x H100) in aws us-east-1, on demand, every GPU held for 30 days. The
list gives it $80.00 an hour on demand (the bundled catalog says $98.32), $50.00 on a
1-year and $35.00 on a 3-year commitment. Worked on paper: the node costs $80 x 24 h =
$1,920 a day. Demand is 1 instance every hour: the 10th percentile is 1, commit 1, nothing
unused; the 1-year saves 1 x ($80 - $50) x 730 = $21,900.00 a month, the 3-year
1 x ($80 - $35) x 730 = $32,850.00, the larger; break-even utilisation 50/80 = 0.625 and
35/80 = 0.4375."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from aifinops.core.windows import from_ms
from aifinops.errors import ConfigError
from aifinops.service import Service
from aifinops.sources.prices.catalog import file_offers
from tests.conftest import HOUR, T0, load_facts, sample

HEAD = "provider,region,instance_type,gpu_model,gpu_count,on_demand_hourly," \
       "commit_1y_hourly,commit_3y_hourly\n"  # fmt: skip
P5 = "aws,us-east-1,p5.48xlarge,H100 80GB,8,80.00,50.00,35.00\n"
DAYS = 30


def price_list(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return str(path)


def test_a_price_list_is_read_exactly(tmp_path: Path) -> None:
    (offer,) = file_offers(price_list(tmp_path, HEAD + P5))
    assert (offer.provider, offer.region, offer.instance_type, offer.gpu_count,
            offer.on_demand_hourly, offer.commit_1y_hourly, offer.commit_3y_hourly,
            offer.spot_hourly) == ("aws", "us-east-1", "p5.48xlarge", 8, Decimal("80.00"),
                                   Decimal("50.00"), Decimal("35.00"), None)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("provider,instance_type,gpu_count\naws,p5,8\n", "lacks column(s) gpu_model, on_demand"),
        (HEAD.replace("\n", ",discount\n") + P5, "unknown column(s) discount"),
        (HEAD + P5 + "aws,us-east-1,p4d,A100,8,abc,,\n", "line 3 of the price list"),
        (HEAD + "aws,us-east-1,p4d,A100,8,-1,,\n", "line 2 of the price list"),
        (HEAD + "aws,us-east-1,p4d,A100,0,10,,\n", "line 2 of the price list"),
        (HEAD + "aws,us-east-1,p4d,A100,8,NaN,,\n", "line 2 of the price list"),
    ],
)
def test_a_bad_price_list_is_refused_naming_where(tmp_path: Path, text: str, message: str) -> None:
    path = price_list(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        file_offers(path)
    assert e.value.where == path


def test_a_missing_price_list_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the price list") as e:
        file_offers(str(tmp_path / "nope.csv"))
    assert e.value.where == str(tmp_path / "nope.csv")


def test_commitments_from_ones_own_prices(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    svc = make_service({"prices": {"catalog_files": [price_list(tmp_path, HEAD + P5)]}})
    node = {"node_id": "p5-a", "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 8,
            "provider": "aws", "region": "us-east-1", "instance_type": "p5.48xlarge",
            "capacity_type": "on-demand", "source": "test"}  # fmt: skip
    pod = {"workload_id": "train/llm", "kind": "pod", "namespace": "train", "name": "llm",
           "node_id": "p5-a", "gpu_request": 8, "gpu_resource": "nvidia.com/gpu",
           "labels": {"team": "research"}, "start_ms": T0 - DAYS * 24 * HOUR,
           "source": "test"}  # fmt: skip
    samples = [
        r
        for t in range(T0 - DAYS * 24 * HOUR, T0, HOUR)
        for g in range(8)
        for r in sample(t, "p5-a", f"GPU-{g}", [("train/llm", 1.0, 1.0, 0.9)], HOUR)
    ]
    load_facts(svc, [node], [pod], samples)
    day = svc.cost(window=f"{from_ms(T0 - 24 * HOUR).isoformat()},{from_ms(T0).isoformat()}",
                   by=["node"])  # fmt: skip
    assert day.asset_cost == Decimal("1920")  # the list's $80.00, not the bundled $98.32
    window = f"{from_ms(T0 - DAYS * 24 * HOUR).isoformat()},{from_ms(T0).isoformat()}"
    found = svc.optimize(window=window, rules=["commitments"])
    (f,) = found.findings
    assert (f.rule, dict(f.scope), f.to_dict()["monthly_saving"], f.evidence["term"]) == (
        "commitments", {"provider": "aws", "region": "us-east-1",
                        "instance_type": "p5.48xlarge"}, "32850.00", "3y")  # fmt: skip
    options = {o["term"]: (Decimal(o["monthly_saving"]), o["break_even_utilisation"])
               for o in f.evidence["options"]}  # fmt: skip
    assert options == {"1y": (Decimal(21900), 0.625), "3y": (Decimal(32850), 0.4375)}
    assert (f.evidence["committed"], f.evidence["coverage"], f.evidence["utilisation"]) == (
        1, 1.0, 1.0)  # fmt: skip
