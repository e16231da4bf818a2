"""Bad input: truncated and re-ordered CSVs, files from other tools, broken XML, duplicates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from aifinops.sources.telemetry.nvidia_smi import detect_kind, parse_dir
from tests.conftest import H100

QUERY = "nvidia_smi_query_gpu.csv"


def copy_capture(tmp_path: Path, *names: str) -> Path:
    out = tmp_path / "host-x"
    out.mkdir(parents=True)
    for name in names or (
        "nvidia_smi_query_gpu.csv",
        "nvidia_smi_compute_apps.csv",
        "nvidia_smi_pmon.txt",
        "nvidia_smi_q.xml",
    ):
        shutil.copy(H100 / name, out / name)
    return out


def test_every_format_is_recognised_by_content() -> None:
    kinds = {p.name: detect_kind(p) for p in H100.iterdir() if p.suffix != ".md"}
    assert kinds == {
        "nvidia_smi_query_gpu.csv": "query-gpu",
        "nvidia_smi_compute_apps.csv": "compute-apps",
        "nvidia_smi_pmon.txt": "pmon",
        "nvidia_smi_dmon.txt": "dmon",
        "nvidia_smi_q.xml": "query-xml",
        "env.txt": None,
        "workload_events.jsonl": None,
    }


def test_parsers_read_the_real_capture() -> None:
    log = parse_dir(H100)
    raw_query = (H100 / QUERY).read_text().splitlines()
    assert len(log.devices) == len(raw_query) - 1 == 390
    assert log.devices[0].util == 0.0 and log.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert len(log.processes) == 358  # compute-apps rows
    assert {p.pid for p in log.pmon} == {732, 817, 896, 937, 938}
    assert log.gpus[0].uuid == "GPU-880d8b20-7208-1c8b-3171-9a1a0239ad7f"
    assert log.gpus[0].mig_mode == "Disabled"
    assert sorted(w.split(":")[0] for w in log.warnings) == sorted(
        str(H100 / n) for n in ("env.txt", "workload_events.jsonl", "SOURCE.md")
    )


def test_truncated_csv_loses_only_the_cut_line(tmp_path: Path) -> None:
    d = copy_capture(tmp_path, QUERY)
    text = (d / QUERY).read_text()
    (d / QUERY).write_text(text[: len(text) - 40])  # cut the last row mid-way
    log = parse_dir(d)
    assert len(log.devices) == 389
    assert any(f"{QUERY}:391: expected 17 fields" in w for w in log.warnings)


def test_reordered_columns_give_the_same_samples(tmp_path: Path) -> None:
    d = copy_capture(tmp_path, QUERY)
    lines = [line.split(", ") for line in (d / QUERY).read_text().splitlines()]
    order = list(reversed(range(len(lines[0]))))
    (d / QUERY).write_text("\n".join(", ".join(r[i] for i in order) for r in lines) + "\n")
    assert parse_dir(d).devices == parse_dir(copy_capture(tmp_path / "b", QUERY)).devices


def test_file_from_another_tool_is_refused(tmp_path: Path) -> None:
    scrape = tmp_path / "metrics.txt"
    scrape.write_text(
        '# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization.\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} 5\n'
    )
    with pytest.raises(InputError, match="does not look like nvidia-smi output") as err:
        parse_dir(scrape)
    assert err.value.where == str(scrape)


def test_missing_required_column_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "q.csv"
    bad.write_text("timestamp, uuid, name\n2026/11/23 10:00:00.000, GPU-1, X\n")
    with pytest.raises(InputError, match=r"lacks utilization\.gpu"):
        parse_dir(bad)


def test_cut_xml_is_refused(tmp_path: Path) -> None:
    d = copy_capture(tmp_path)
    xml = (d / "nvidia_smi_q.xml").read_text()
    (d / "nvidia_smi_q.xml").write_text(xml[: len(xml) // 2])
    with pytest.raises(InputError, match="not well-formed XML"):
        parse_dir(d)


def test_dmon_alone_gives_device_samples(tmp_path: Path) -> None:
    d = copy_capture(tmp_path, "nvidia_smi_dmon.txt", "nvidia_smi_q.xml")
    log = parse_dir(d)
    data_lines = [x for x in (d / "nvidia_smi_dmon.txt").read_text().splitlines() if x[:1] != "#"]
    assert log.device_kind == "dmon" and len(log.devices) == len(data_lines) == 372
    assert {s.gpu_uuid for s in log.devices} == {"GPU-880d8b20-7208-1c8b-3171-9a1a0239ad7f"}


def test_no_device_log_is_an_error(tmp_path: Path) -> None:
    d = copy_capture(tmp_path, "nvidia_smi_compute_apps.csv")
    with pytest.raises(InputError, match="no GPU samples found"):
        parse_dir(d)


def test_overlapping_longer_log_replaces_not_adds(make_service: Any, tmp_path: Path) -> None:
    svc = make_service({"prices": {"gpu_models": {"H100": 4.0}}})
    short = copy_capture(tmp_path / "a")
    text = (short / QUERY).read_text().splitlines()
    (short / QUERY).write_text("\n".join(text[:200]) + "\n")
    svc.ingest_nvidia_smi(short, host="h")
    full = copy_capture(tmp_path / "b")
    svc.ingest_nvidia_smi(full, host="h")
    rows = svc.store.raw(
        "SELECT count(DISTINCT ts_ms), count(*) FROM gpu_usage "
        "WHERE workload_id IS NULL OR workload_id NOT LIKE '%,%'"
    )
    assert rows[0][0] == 390  # each device sample once
    hours = sum(
        r.gpu_hours for r in svc.cost(window="2026-11-23T10:00:00Z,2026-11-23T11:00:00Z").rows
    )
    assert float(hours) * 3600 == pytest.approx(390.9, abs=1.0)
    # the per-node roll-up was replaced with the samples, not added to
    (samples,) = svc.store.raw("SELECT sum(held_req), count(DISTINCT ts_ms) FROM gpu_usage")
    (rollup,) = svc.store.raw("SELECT sum(dev), count(DISTINCT ts_ms) FROM node_presence")
    assert rollup == samples
    assert (
        svc.store.raw(
            "SELECT node_id, ts_ms, sum(held_req) FROM gpu_usage GROUP BY ALL EXCEPT "
            "SELECT node_id, ts_ms, sum(dev) FROM node_presence GROUP BY ALL"
        )
        == []
    )


def test_unowned_processes_are_unallocated(make_service: Any) -> None:
    svc = make_service({"prices": {"gpu_models": {"H100": 4.0}}})
    result = svc.ingest_nvidia_smi(H100, host="h")
    assert any("5 process(es) had no owner" in n for n in result.notes)
    teams = {
        r.key["team"] for r in svc.cost(window="2026-11-23T10:00:00Z,2026-11-23T11:00:00Z").rows
    }
    assert teams == {"__unallocated__", "__idle__"}


def test_bad_owners_file_names_line(tmp_path: Path, make_service: Any) -> None:
    owners = tmp_path / "owners.csv"
    owners.write_text('pid,workload,labels\n732,a,"{""team"":""x""}"\n817,b,{not json}\n')
    svc = make_service()
    with pytest.raises(InputError, match="labels are not valid JSON") as err:
        svc.ingest_nvidia_smi(H100, owners_file=owners, host="h")
    assert err.value.where == f"{owners}:3"
    assert svc.store.count("gpu_usage") == 0  # nothing half-loaded
