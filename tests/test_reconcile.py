"""Reconciliation (DESIGN 2.9): each node's allocation scaled to its billed EffectiveCost.

One hour, window [T0, T0 + 1h), three H100 nodes at a list price of $3.00/GPU-hour:
  n1 (i-0aaa): team a holds it 40 min ($2.00), idle 20 min ($1.00)          list 3.00
  n2 (i-0bbb): team b holds it the hour ($3.00)                              list 3.00
  n3 (i-0ccc): team a 30 min ($1.50), idle 30 min ($1.50); not in the bill   list 3.00
The bill (FOCUS), worked by hand:
  n1 ran on spot: billed 1.20, effective 1.20                 -> factor 0.4
  n2 covered by a savings plan (billed 0, effective 2.10) and a credit of -0.30
                                                             -> 1.80, factor 0.6
  n1 the hour after the window: 5.00 (outside, ignored)
  an S3 bucket 0.50 (Storage); a NAT gateway day [T0-12h, T0+12h) 2.40 (Networking):
  1/24 of it, 0.10, falls in the window; an EU bucket 0.40 EUR (kept apart).
Per team:   list     billed                    difference  unbilled
  a         3.50     2.00*0.4 + 1.50 = 2.30    -1.20       1.50
  b         3.00     3.00*0.6       = 1.80     -1.20       0
  __idle__  2.50     1.00*0.4 + 1.50 = 1.90    -0.60       1.50
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.model import IDLE
from aifinops.core.reconcile import resource_key
from aifinops.core.windows import from_ms
from aifinops.errors import UsageError
from tests.conftest import HOUR, MIN, T0, load_facts, sample, window

pytestmark = pytest.mark.engines


PRICE = {"prices": {"gpu_models": {"H100": 3.00}}}
HEADER = [
    "ProviderName",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ServiceName",
    "ServiceCategory",
    "ResourceId",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
]


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def _line(
    rid: str,
    start: int,
    end: int,
    category: str,
    service: str,
    billed: str,
    effective: str,
    listed: str,
    charge: str = "Usage",
    cur: str = "USD",
) -> list[str]:
    return [
        "AWS",
        "123456789012",
        cur,
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
        _iso(start),
        _iso(end),
        charge,
        service,
        category,
        rid,
        billed,
        effective,
        listed,
    ]


def _bill(path: Path) -> Path:
    h = T0 + HOUR
    lines = [
        _line("i-0aaa", T0, h, "Compute", "Amazon EC2", "1.20", "1.20", "3.00"),
        _line("i-0bbb", T0, h, "Compute", "Amazon EC2", "0", "2.10", "3.00"),
        _line("i-0bbb", T0, h, "Compute", "Amazon EC2", "-0.30", "-0.30", "0", "Credit"),
        _line("i-0aaa", h, h + HOUR, "Compute", "Amazon EC2", "5.00", "5.00", "5.00"),
        _line("arn:aws:s3:::my-bucket", T0, h, "Storage", "Amazon S3", "0.50", "0.50", "0.50"),
        _line(
            "nat-0123",
            T0 - 12 * HOUR,
            T0 + 12 * HOUR,
            "Networking",
            "Amazon VPC",
            "2.40",
            "2.40",
            "2.40",
        ),
        _line("eu-bucket", T0, h, "Storage", "Amazon S3", "0.40", "0.40", "0.40", cur="EUR"),
    ]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        out.writerows(lines)
    return path


def _fleet(svc: Any) -> None:
    def node(node_id: str, rid: str) -> dict[str, Any]:
        return {
            "node_id": node_id,
            "gpu_model": "NVIDIA H100 80GB HBM3",
            "gpu_count": 1,
            "resource_id": rid,
            "provider": "aws",
            "source": "test",
        }

    def pod(wid: str, team: str, node_id: str) -> dict[str, Any]:
        return {
            "workload_id": wid,
            "kind": "pod",
            "namespace": wid.split("/")[0],
            "node_id": node_id,
            "labels": {"team": team},
            "source": "test",
        }

    samples = []
    for i in range(60):
        t = T0 + i * MIN
        samples += sample(t, "n1", "g0", [("a/w1", 1, 1, 1) if i < 40 else (None, 1, 1, 0)])
        samples += sample(t, "n2", "g0", [("b/w2", 1, 1, 1)])
        samples += sample(t, "n3", "g0", [("a/w3", 1, 1, 1) if i < 30 else (None, 1, 1, 0)])
    load_facts(
        svc,
        [node("n1", "i-0aaa"), node("n2", "aws:///us-east-1a/i-0bbb"), node("n3", "i-0ccc")],
        [pod("a/w1", "a", "n1"), pod("b/w2", "b", "n2"), pod("a/w3", "a", "n3")],
        samples,
    )


def _d(x: float | Decimal) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.000001"))


def test_allocation_scaled_to_the_bill_per_node(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICE)
    _fleet(svc)
    svc.ingest_focus([_bill(tmp_path / "bill.csv")])
    report = svc.reconcile(window=window(1), by=["team"])
    got = {
        r.key["team"]: (_d(r.list_cost), _d(r.billed_cost), _d(r.difference), _d(r.unbilled_cost))
        for r in report.rows
    }
    d = Decimal
    assert got == {
        "a": (d("3.5"), d("2.3"), d("-1.2"), d("1.5")),
        "b": (d("3"), d("1.8"), d("-1.2"), d("0")),
        IDLE: (d("2.5"), d("1.9"), d("-0.6"), d("1.5")),
    }
    nodes = {n.node: n.to_dict() for n in report.nodes}
    assert (nodes["n1"]["factor"], nodes["n2"]["factor"], nodes["n3"]["factor"]) == (0.4, 0.6, None)
    assert nodes["n3"]["billed_cost"] is None
    other = {
        (o.service_category, o.currency): (_d(o.billed_cost), _d(o.effective_cost))
        for o in report.other
    }
    assert other == {
        ("Storage", "USD"): (d("0.5"), d("0.5")),
        ("Networking", "USD"): (d("0.1"), d("0.1")),
        ("Storage", "EUR"): (d("0.4"), d("0.4")),
    }
    # conservation: the billed rows are the bill of the covered nodes plus the list price of
    # the uncovered one; nothing of the bill is lost or counted twice
    assert _d(report.total("billed_cost")) == d("1.2") + d("1.8") + d("3.0")
    assert report.notes[0].startswith("2 of 3 node(s) found in the bill")
    # without the bill nothing is scaled; the window cuts the day-long line, not the hour after
    later = svc.reconcile(window=window(1, start=T0 + HOUR), by=["team"])
    assert later.rows == [] and {
        (o.service_category, _d(o.effective_cost)) for o in later.other
    } == {("Compute", d("5")), ("Networking", d("0.1"))}


def test_grouping_by_node_and_a_bad_dimension(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICE)
    _fleet(svc)
    svc.ingest_focus([_bill(tmp_path / "bill.csv")])
    report = svc.reconcile(window=window(1), by=["node"])
    got = {r.key["node"]: _d(r.billed_cost) for r in report.rows}
    assert got == {"n1": Decimal("1.2"), "n2": Decimal("1.8"), "n3": Decimal("3")}
    with pytest.raises(UsageError, match="cannot group by"):
        svc.reconcile(window=window(1), by=["colour"])


def test_resource_keys() -> None:
    arm = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/GPU-VM1"
    assert resource_key(arm) == resource_key(
        "azure:///subscriptions/s/resourcegroups/rg/"
        "providers/microsoft.compute/virtualmachines/gpu-vm1"
    )
    assert resource_key("aws:///us-east-1a/i-0abc") == resource_key("i-0ABC") == "i-0abc"
    assert resource_key("") is None and resource_key(None) is None
    # a scale-set instance is billed under its scale set; a plain VM under itself
    from aifinops.core.reconcile import group_key
    from aifinops.sources.inventory.kubernetes import resource_id

    vmss = "azure:///subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/"
    inst = resource_id(vmss + "virtualMachineScaleSets/AKS-GPU-VMSS/virtualMachines/3")
    assert inst == "AKS-GPU-VMSS/virtualMachines/3" and group_key(inst) == "aks-gpu-vmss"
    assert group_key(arm) is None and group_key("i-0abc") is None and group_key(None) is None
    assert resource_id("aws:///us-east-1a/i-0abc") == "i-0abc"


def test_cost_reconciled_on_the_command_line(make_service: Any, tmp_path: Path) -> None:
    import yaml

    svc = make_service(PRICE)
    _fleet(svc)
    svc.ingest_focus([_bill(tmp_path / "bill.csv")])
    svc.close()
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump(PRICE))
    base = [
        sys.executable,
        "-m",
        "aifinops",
        "--db",
        svc.settings.db,
        "--config",
        str(cfg),
        "cost",
        "--reconciled",
        "--window",
        window(1),
    ]
    out = subprocess.run([*base, "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    teams = {
        tuple(r["key"].values()): (r["list_cost"], r["billed_cost"], r["difference"])
        for r in data["rows"]
    }
    assert teams[("a",)] == (3.5, 2.3, -1.2) and teams[("b",)] == (3.0, 1.8, -1.2)
    assert {o["service_category"] for o in data["other_spend"]} == {"Storage", "Networking"}
    table = subprocess.run(base, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "list" in table.stdout and "billed" in table.stdout and "Networking" in table.stdout
    bad = subprocess.run([*base, "--step", "1h"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--reconciled" in bad.stderr


def test_savings_plan_reservation_spot_and_credit_from_a_cur(
    make_service: Any, commitment_cur: Path
) -> None:
    """The CUR hour of conftest's `commitment_cur` (2026-11-02 00:00-01:00): list prices are the
    on-demand rates (p5.48xlarge 98.32/h, g5.xlarge 1.006/h); the bill's EffectiveCost is
    60.00 under the Savings Plan (i-1), 0.55 under the reservation (i-2), 0.40 on spot (i-3).
    The plan's unused commitment (70 - 60 = 10) and the -5.00 credit name no resource: they
    stay visible as other spend (effective 10 - 5 = 5; billed 70 - 5 = 65)."""
    t0 = 1_793_577_600_000  # 2026-11-02T00:00:00Z
    cfg = {"prices": {"instance_types": {"p5.48xlarge": 98.32, "g5.xlarge": 1.006}}}
    svc = make_service(cfg)
    nodes, pods, samples = [], [], []
    for n, rid, itype, gpus, team in (
        ("sp", "i-1", "p5.48xlarge", 8, "ml"),
        ("ri", "i-2", "g5.xlarge", 1, "web"),
        ("spot", "i-3", "g5.xlarge", 1, "batch"),
    ):
        model = "NVIDIA H100 80GB HBM3" if gpus == 8 else "NVIDIA A10G"
        nodes.append(
            {
                "node_id": n,
                "instance_type": itype,
                "gpu_model": model,
                "gpu_count": gpus,
                "resource_id": rid,
                "source": "test",
            }
        )
        pods.append(
            {
                "workload_id": f"{team}/job",
                "kind": "pod",
                "namespace": team,
                "node_id": n,
                "labels": {"team": team},
                "source": "test",
            }
        )
        for i in range(60):
            for g in range(gpus):
                samples += sample(t0 + i * MIN, n, f"g{g}", [(f"{team}/job", 1, 1, 1)])
    load_facts(svc, nodes, pods, samples)
    svc.ingest_bills("cur", [commitment_cur])
    # per node (a g5.xlarge's CPU and RAM part, unrequested here, is its idle row)
    report = svc.reconcile(window=window(1, start=t0), by=["node"])
    got = {r.key["node"]: (_d(r.list_cost), _d(r.billed_cost)) for r in report.rows}
    d = Decimal
    assert got == {
        "sp": (d("98.32"), d("60")),
        "ri": (d("1.006"), d("0.55")),
        "spot": (d("1.006"), d("0.4")),
    }
    assert sum(o.effective_cost for o in report.other) == d("5")
    assert sum(o.billed_cost for o in report.other) == d("65")
    assert report.notes[0].startswith("3 of 3 node(s)")


def test_aks_scale_set_bill_spread_over_its_instances(make_service: Any, tmp_path: Path) -> None:
    """AKS nodes are scale-set instances; the Azure bill carries the scale set. Two H100
    instances (providerID .../virtualMachineScaleSets/aks-gpu-vmss/virtualMachines/0 and /1)
    at $3.00/GPU-hour list: n0 held by team a the hour ($3.00), n1 by team b for 30 min
    ($1.50) and idle 30 min ($1.50). The scale set's EffectiveCost for the hour is 4.00: each
    instance (equal list cost) takes 2.00, so a 3.00 -> 2.00, b 1.50 -> 1.00, idle -> 1.00."""
    vmss = ("/subscriptions/S/resourceGroups/MC_rg/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/aks-gpu-vmss")  # fmt: skip
    nodes = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": f"aks-gpu-vmss00000{i}",
                      "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                 "nvidia.com/gpu.count": "1"}},
         "spec": {"providerID": f"azure://{vmss}/virtualMachines/{i}"}}
        for i in (0, 1)
    ]  # fmt: skip
    dump = tmp_path / "nodes.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    svc = make_service({"prices": {"gpu_models": {"H100": 3.00}}})
    svc.ingest_kubernetes([dump])
    n0, n1 = "aks-gpu-vmss000000", "aks-gpu-vmss000001"
    samples = []
    for i in range(60):
        samples += sample(T0 + i * MIN, n0, "g0", [("a/w0", 1, 1, 1)])
        samples += sample(
            T0 + i * MIN, n1, "g0", [("b/w1", 1, 1, 1) if i < 30 else (None, 1, 1, 0)]
        )
    pods = [{"workload_id": w, "kind": "pod", "namespace": w[0], "node_id": n,
             "labels": {"team": w[0]}, "source": "test"}
            for w, n in (("a/w0", n0), ("b/w1", n1))]  # fmt: skip
    load_facts(svc, [], pods, samples)
    bill = tmp_path / "azure-focus.csv"
    with bill.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        row = _line(vmss, T0, T0 + HOUR, "Compute", "Virtual Machines", "4.00", "4.00", "6.00")
        out.writerow(["Microsoft", *row[1:]])
    svc.ingest_focus([bill])
    report = svc.reconcile(window=window(1), by=["team"])
    got = {r.key["team"]: (_d(r.list_cost), _d(r.billed_cost)) for r in report.rows}
    d = Decimal
    assert got == {"a": (d("3"), d("2")), "b": (d("1.5"), d("1")), IDLE: (d("1.5"), d("1"))}
    assert report.notes[0].startswith("2 of 2 node(s)") and report.other == []
    assert {n.resource_id for n in report.nodes} == {
        "aks-gpu-vmss/virtualMachines/0",
        "aks-gpu-vmss/virtualMachines/1",
    }


def test_a_node_without_list_price_is_priced_from_its_bill(
    make_service: Any, tmp_path: Path
) -> None:
    """n4 has a GPU no price list knows (so its hour would sit in __unpriced__); the bill
    says its instance cost 7.00 for the hour: team c, which held it 45 of the 60 minutes,
    is charged 7.00 x 45/60 = 5.25 and idle 1.75, with no list cost to compare."""
    svc = make_service(PRICE)
    node = {"node_id": "n4", "gpu_model": "NVIDIA Z900", "gpu_count": 1,
            "resource_id": "i-0ddd", "source": "test"}  # fmt: skip
    pod = {"workload_id": "c/w4", "kind": "pod", "namespace": "c", "node_id": "n4",
           "labels": {"team": "c"}, "source": "test"}  # fmt: skip
    samples = []
    for i in range(60):
        holder = ("c/w4", 1, 1, 1) if i < 45 else (None, 1, 1, 0)
        samples += sample(T0 + i * MIN, "n4", "g0", [holder])
    load_facts(svc, [node], [pod], samples)
    assert svc.cost(window=window(1)).unpriced  # without the bill: unpriced
    bill = tmp_path / "bill.csv"
    with bill.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        out.writerow(_line("i-0ddd", T0, T0 + HOUR, "Compute", "Amazon EC2", "7", "7", "7"))
    svc.ingest_focus([bill])
    report = svc.reconcile(window=window(1), by=["team"])
    got = {r.key["team"]: (_d(r.list_cost), _d(r.billed_cost), _d(r.difference))
           for r in report.rows}  # fmt: skip
    d = Decimal
    assert got == {"c": (d("0"), d("5.25"), d("5.25")), IDLE: (d("0"), d("1.75"), d("1.75"))}
    assert any("n4 has no list price; priced from its bill at 7.0000" in n for n in report.notes)
