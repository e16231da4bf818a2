"""dcgm-exporter scrapes: the real T4 scrape, a hand-made fleet scrape costed by hand, bad input."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from aifinops.sources.exposition import parse
from aifinops.sources.telemetry.dcgm import mig_weight, read_scrapes, to_facts
from tests.conftest import Served, free_port

DATA = Path(__file__).parent / "data" / "metrics"
REAL = DATA / "dcgm_metrics.txt"
AT = "2026-11-23T10:00:00Z"
AT_MS = 1_795_428_000_000


def test_real_t4_scrape_parses() -> None:
    text = REAL.read_text()
    expo = parse(text, "t4")
    assert expo.problems == []
    # every sample line of the file is a sample (lines not starting with '#', not blank)
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
    assert len(expo.samples) == len(lines) == 30
    assert expo.types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"

    (scrape,) = read_scrapes(text, "t4", AT_MS)
    assert set(scrape.devices) == {
        ("424773df46e0", "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e"),
        ("551bdf382151", "GPU-9ef1b6d0-3643-5dd7-b823-c0ec20dcf2d5"),
    }
    first = scrape.devices[("424773df46e0", "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e")]
    assert first.model == "Tesla T4" and first.index == "0"
    # read off the file: lines 12, 15, 21, 36
    assert first.values["DCGM_FI_DEV_POWER_USAGE"] == 8.969
    assert first.values["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == 128996013
    assert first.values["DCGM_FI_DEV_GPU_UTIL"] == 0
    assert first.values["DCGM_FI_DEV_FB_FREE"] == 15109
    # the seven series the fixture wrote without any labels cannot be placed on a GPU
    assert any("skipped 7 sample(s), no Hostname label" in p for p in scrape.problems)

    facts = to_facts([scrape], 30_000)
    by_node = {n["node_id"]: n for n in facts.nodes}
    assert by_node["424773df46e0"]["util_signal"] == "DCGM_FI_DEV_GPU_UTIL"
    assert by_node["551bdf382151"]["util_signal"] is None  # that host exported no usage
    assert facts.usage.num_rows == 2 and facts.workloads == []
    assert [(e["gpu_id"][:12], e["energy_mj"], e["power_w"]) for e in facts.energy] == [
        ("GPU-20c56d28", 128996013.0, 8.969)
    ]


def _series(name: str, value: float, **labels: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value}"


def fleet_scrape() -> str:
    h100 = {"modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-a"}
    a100 = {"modelName": "NVIDIA A100-SXM4-80GB", "hostname": "node-b"}  # the newer label
    p1 = {"gpu": "0", "UUID": "GPU-a0", "pod": "p1", "namespace": "ml", **h100}
    s1 = {"gpu": "1", "UUID": "GPU-a1", "pod": "s1", "namespace": "web", **h100}
    s2 = {**s1, "pod": "s2"}
    m1 = {"gpu": "0", "UUID": "GPU-b0", "GPU_I_ID": "1", "GPU_I_PROFILE": "3g.40gb", **a100}
    m1 |= {"pod": "m1", "namespace": "ml"}
    free = {"gpu": "0", "UUID": "GPU-b0", "GPU_I_ID": "2", "GPU_I_PROFILE": "1g.10gb", **a100}
    lines = [
        "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
        # GPU 0: one pod; GR_ENGINE_ACTIVE is preferred over GPU_UTIL
        _series("DCGM_FI_DEV_GPU_UTIL", 90, **p1),
        _series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.25, **p1),
        _series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 5_000_000, **p1),
        # GPU 1: time-sliced between two pods (the series repeats per pod); SM_ACTIVE only
        _series("DCGM_FI_PROF_SM_ACTIVE", 0.5, **s1),
        _series("DCGM_FI_PROF_SM_ACTIVE", 0.5, **s2),
        # node-b GPU 0: MIG; 3g.40gb held by a pod, 1g.10gb free; GPU_UTIL must be ignored
        _series("DCGM_FI_DEV_GPU_UTIL", 100, **m1),
        _series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.6, **m1),
        _series("DCGM_FI_DEV_GPU_UTIL", 100, **free),
        "go_goroutines 12",
    ]
    return "\n".join(lines) + "\n"


def test_fleet_scrape_holders_mig_and_time_slicing(make_service: Any, tmp_path: Path) -> None:
    path = tmp_path / "fleet.prom"
    path.write_text(fleet_scrape())
    svc = make_service(
        {"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": 3.60, "A100-SXM4-80GB": 7.00}}}
    )
    (result,) = svc.ingest_dcgm([str(path)], at=AT, interval="60s")
    assert result.status == "loaded" and result.workloads == 4
    rows = svc.store.raw(
        "SELECT gpu_id, workload_id, held_req, used FROM gpu_usage ORDER BY gpu_id, workload_id"
    )
    d = Decimal
    assert rows == [
        ("GPU-a0", "ml/p1", d("60000"), d("15000")),  # 60 s held, 25 % busy
        ("GPU-a1", "web/s1", d("30000"), d("15000")),  # half the time each, SM 50 %
        ("GPU-a1", "web/s2", d("30000"), d("15000")),
        # what no instance was carved from: 60,000 - 25,714.285714 - 8,571.428571
        ("GPU-b0", None, d("25714.285715"), d("0")),
        ("GPU-b0/1", "ml/m1", d("25714.285714"), d("15428.571429")),  # 3/7; 60 % busy
        ("GPU-b0/2", None, d("8571.428571"), d("0")),  # 1/7, no pod
    ]
    nodes = {
        r[0]: r[1:] for r in svc.store.raw("SELECT node_id, gpu_count, util_signal FROM nodes")
    }
    assert nodes == {
        "node-a": (2, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
        "node-b": (1, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    }
    report = svc.cost(window="2026-11-23T10:00:00Z,2026-11-23T10:01:00Z", by=["workload"])
    cost = {r.key["workload"]: float(r.total_cost) for r in report.rows}
    # $3.60/h = $0.000001 per ms: p1 60,000 ms -> $0.06; s1, s2 30,000 ms -> $0.03 each;
    # m1: 3/7 of a minute of a $7/h A100 = 7 / 60 * 3/7 = $0.05; idle: the free 4/7 = $0.0666..
    assert cost["ml/p1"] == pytest.approx(0.06, abs=1e-9)
    assert cost["web/s1"] == pytest.approx(0.03, abs=1e-9)
    assert cost["web/s2"] == pytest.approx(0.03, abs=1e-9)
    assert cost["ml/m1"] == pytest.approx(0.05, abs=1e-8)
    assert cost["__idle__"] == pytest.approx(7 / 60 * 4 / 7, abs=1e-8)
    assert float(report.asset_cost) == pytest.approx(0.06 * 2 + 7 / 60, abs=1e-8)

    again = svc.ingest_dcgm([str(path)], at=AT, interval="60s")
    assert again[0].status == "unchanged"
    assert svc.store.count("gpu_usage") == 6


def test_mig_weights() -> None:
    assert mig_weight("1g.10gb", "A100") == mig_weight("1g.5gb", None) == pytest.approx(1 / 7)
    assert mig_weight("7g.80gb", "H100") == 1
    assert mig_weight("2g.12gb", "NVIDIA A30") == pytest.approx(2 / 4)


def test_timestamps_make_one_scrape_each() -> None:
    text = (
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="U",Hostname="h"} 50 1795428000000\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="U",Hostname="h"} 100 1795428030000\n'
    )
    scrapes = read_scrapes(text, "x", 0)
    assert [s.ts_ms for s in scrapes] == [1795428000000, 1795428030000]
    facts = to_facts(scrapes, 30_000)
    assert facts.start_ms == 1795428000000 and facts.end_ms == 1795428060000


def test_truncated_scrape_keeps_the_good_lines(make_service: Any, tmp_path: Path) -> None:
    text = fleet_scrape()
    cut = text[: text.rindex('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-b0",GPU_I_ID="2"') + 40]
    assert cut.count("\n") == 8  # the 9th line is cut in its labels
    cut = cut.replace("0.25", "NaN", 1)  # GPU-a0's GR_ENGINE_ACTIVE is NaN
    path = tmp_path / "cut.prom"
    path.write_text(cut)
    svc = make_service()
    (result,) = svc.ingest_dcgm([str(path)], at=AT, interval="60s")
    notes = " | ".join(result.notes)
    assert f"{path}:9: not a metric sample (truncated?)" in notes  # line 1 is the # TYPE
    assert "value is NaN or infinite: DCGM_FI_PROF_GR_ENGINE_ACTIVE" in notes
    # GPU-a0 falls back to GPU_UTIL 90 %; the cut MIG instance 2 is simply not there
    used = dict(svc.store.raw("SELECT gpu_id, used FROM gpu_usage WHERE workload_id = 'ml/p1'"))
    assert used == {"GPU-a0": Decimal("54000")}
    assert {r[0] for r in svc.store.raw("SELECT gpu_id FROM gpu_usage")} == {
        "GPU-a0",
        "GPU-a1",
        "GPU-b0",
        "GPU-b0/1",
    }


def test_not_a_dcgm_scrape(make_service: Any, tmp_path: Path) -> None:
    path = tmp_path / "vllm.txt"
    path.write_text((DATA / "vllm_metrics.txt").read_text())
    svc = make_service()
    with pytest.raises(InputError, match="no GPU samples in this scrape") as info:
        svc.ingest_dcgm([str(path)])
    assert info.value.where == str(path)
    assert svc.store.count("gpu_usage") == 0


def test_scrape_over_http_with_retry(make_service: Any, served: Served) -> None:
    body = REAL.read_bytes()
    served.routes["/metrics"] = [(500, b"busy"), (200, body)]
    svc = make_service()
    (result,) = svc.ingest_dcgm([served.url("/metrics")], at=AT)
    assert result.status == "loaded" and result.rows == 2
    assert served.hits["/metrics"] == 2


def test_dead_endpoint_and_404(make_service: Any, served: Served) -> None:
    svc = make_service()
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(InputError, match="cannot reach it") as info:
        svc.ingest_dcgm([dead])
    assert info.value.where == dead
    with pytest.raises(InputError, match="HTTP 404"):
        svc.ingest_dcgm([served.url("/nothing")])
    assert served.hits["/nothing"] == 1  # a 4xx is not retried
    assert svc.store.count("gpu_usage") == 0


def test_clock_skew_is_reported_and_data_kept(make_service: Any, tmp_path: Path) -> None:
    ahead = AT_MS + 3_600_000  # this node's clock runs an hour fast
    path = tmp_path / "skew.prom"
    path.write_text(
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="U1",Hostname="fast"}} 50 {ahead}\n'
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="U2",Hostname="ok"}} 50 {AT_MS + 1000}\n'
    )
    svc = make_service()
    (result,) = svc.ingest_dcgm([str(path)], at=AT, interval="60s")
    skew = [n for n in result.notes if n.startswith("clock skew")]
    assert skew == [
        "clock skew: fast's sample timestamps are 3,600 s ahead of the time of the scrape; "
        "they are stored as the exporter stamped them"
    ]
    assert sorted(svc.store.raw("SELECT node_id, ts_ms FROM gpu_usage")) == [
        ("fast", ahead),
        ("ok", AT_MS + 1000),
    ]
