"""nvidia-smi's memory.used (and power.draw) stored as GPU readings (`gpu_energy`): read from
real rows of the H100 capture, NULL where nvidia-smi printed no number, one reading per
device sample, and the same logs read twice change nothing.

The rows below are quoted from the capture's nvidia_smi_query_gpu.csv (a test checks they
are in it) and the expected numbers are read off them by eye; whole-file checks compare
with the raw file's own column, never with what an ingest stored."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aifinops.demo.capture import owners_from_events
from aifinops.sources.telemetry.nvidia_smi import DeviceSample, parse_query_gpu
from tests.conftest import H100, nvidia_smi_time

HEAD = (
    "timestamp, index, uuid, name, pci.bus_id, driver_version, pstate, temperature.gpu, "
    "utilization.gpu [%], utilization.memory [%], memory.total [MiB], memory.used [MiB], "
    "memory.free [MiB], power.draw [W], power.limit [W], clocks.current.sm [MHz], "
    "clocks.current.memory [MHz]\n"
)
UUID = "GPU-880d8b20-7208-1c8b-3171-9a1a0239ad7f"
_ROW = ", 0, " + UUID + ", NVIDIA H100 80GB HBM3, 00000000:00:06.0, 580.159.04, P0, "
ROWS = [  # lines 48, 49, 50 and 264: the first model load, and the notebook's 30 GiB
    "2026/11/23 10:34:46.092" + _ROW + "41, 0 %, 0 %, 81559 MiB, 22 MiB, 81058 MiB, 72.75 W, "
    "700.00 W, 345 MHz, 2619 MHz\n",
    "2026/11/23 10:34:47.103" + _ROW + "42, 2 %, 0 %, 81559 MiB, 2157 MiB, 78923 MiB, 119.09 W, "
    "700.00 W, 1980 MHz, 2619 MHz\n",
    "2026/11/23 10:34:48.105" + _ROW + "42, 4 %, 0 %, 81559 MiB, 2161 MiB, 78919 MiB, 126.00 W, "
    "700.00 W, 1980 MHz, 2619 MHz\n",
    "2026/11/23 10:38:22.576" + _ROW + "42, 0 %, 0 %, 81559 MiB, 31459 MiB, 49621 MiB, 121.27 W, "
    "700.00 W, 1980 MHz, 2619 MHz\n",
]
# (utilization.gpu, memory.used MiB, power.draw W) of ROWS, as printed
EXPECTED = [(0.0, 22.0, 72.75), (0.02, 2157.0, 119.09), (0.04, 2161.0, 126.0),
            (0.0, 31459.0, 121.27)]  # fmt: skip
# line 49 as `--format=csv,nounits` prints it: the header keeps its units, the cells drop them
NOUNITS = (
    "2026/11/23 10:34:47.103" + _ROW + "42, 2, 0, 81559, 2157, 78923, 119.09, 700.00, 1980, 2619\n"
)
# The capture's H100 reported every field, so it has no [N/A] cell: these are line 50 with
# memory.used and power.draw as nvidia-smi prints a field the GPU does not report.
NOT_READ = [
    "2026/11/23 10:34:48.105" + _ROW + "42, 4 %, 0 %, 81559 MiB, [N/A], 78919 MiB, "
    "[Not Supported], 700.00 W, 1980 MHz, 2619 MHz\n",
    "2026/11/23 10:34:48.105" + _ROW + "42, 4 %, 0 %, 81559 MiB, N/A, 78919 MiB, [N/A], "
    "700.00 W, 1980 MHz, 2619 MHz\n",
]


def _parse(tmp_path: Path, *lines: str) -> tuple[list[DeviceSample], list[str]]:
    path = tmp_path / "query_gpu.csv"
    path.write_text(HEAD + "".join(lines))
    warnings: list[str] = []
    return parse_query_gpu(path, ZoneInfo("UTC"), warnings), warnings


def test_rows_are_the_captures() -> None:
    text = (H100 / "nvidia_smi_query_gpu.csv").read_text()
    assert text.startswith(HEAD)
    assert all(row in text for row in ROWS)


def test_memory_used_of_real_rows(tmp_path: Path) -> None:
    got, warnings = _parse(tmp_path, *ROWS)
    assert warnings == []
    assert [(d.util, d.memory_used_mib, d.power_w) for d in got] == EXPECTED
    assert [d.ts_ms for d in got] == [round(nvidia_smi_time(r[:23]) * 1000) for r in ROWS]


def test_memory_used_without_units(tmp_path: Path) -> None:
    (got,), warnings = _parse(tmp_path, NOUNITS)
    assert warnings == []
    assert (got.util, got.memory_used_mib, got.power_w) == EXPECTED[1]


def test_not_read_is_null_not_zero(tmp_path: Path) -> None:
    got, warnings = _parse(tmp_path, *NOT_READ)
    assert warnings == []  # no error: the rest of the row still counts
    assert [(d.util, d.memory_used_mib, d.power_w) for d in got] == [(0.04, None, None)] * 2


def test_query_without_memory_used(tmp_path: Path) -> None:
    path = tmp_path / "query_gpu.csv"
    path.write_text(f"timestamp, uuid, utilization.gpu [%]\n{ROWS[1][:23]}, {UUID}, 2 %\n")
    (got,) = parse_query_gpu(path, ZoneInfo("UTC"), [])
    assert (got.util, got.memory_used_mib, got.power_w) == (0.02, None, None)


def _readings(svc: Any) -> list[tuple[Any, ...]]:
    return svc.store.raw(
        "SELECT ts_ms, node_id, gpu_id, energy_mj, power_w, fb_used_mib, source "
        "FROM gpu_energy ORDER BY ts_ms"
    )


def test_stored_with_null_where_not_read(make_service: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "query_gpu.csv").write_text(HEAD + ROWS[0] + ROWS[1] + NOT_READ[0])
    svc = make_service()
    assert svc.ingest_nvidia_smi(logs, host="h").status == "loaded"
    ms = [round(nvidia_smi_time(r[:23]) * 1000) for r in (ROWS[0], ROWS[1], NOT_READ[0])]
    assert _readings(svc) == [
        (ms[0], "h", UUID, None, 72.75, 22.0, "nvidia-smi"),
        (ms[1], "h", UUID, None, 119.09, 2157.0, "nvidia-smi"),
        # a sample that read neither memory nor power leaves no reading at all
    ]


def _raw_column(name: str) -> list[float]:
    with (H100 / "nvidia_smi_query_gpu.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))
    return sorted(float(r[name].split()[0]) for r in rows)


def test_capture_readings_once_each(make_service: Any) -> None:
    svc = make_service()
    assert svc.ingest_nvidia_smi(H100, host="h100-a").status == "loaded"
    stored = _readings(svc)
    memory, power = _raw_column("memory.used [MiB]"), _raw_column("power.draw [W]")
    assert len(memory) == 390  # every line of the file but its header
    assert sorted(r[5] for r in stored) == memory
    assert sorted(r[4] for r in stored) == pytest.approx(power, abs=1e-9)
    assert {(r[1], r[2], r[3], r[6]) for r in stored} == {("h100-a", UUID, None, "nvidia-smi")}
    # each reading lies at the time of its sample's rows, so a holder's samples find it
    sampled = {t for (t,) in svc.store.raw("SELECT DISTINCT ts_ms FROM gpu_usage")}
    assert {r[0] for r in stored} == sampled

    # the same logs again: nothing new; read again (other owners, so not recognised as
    # seen): the readings of that span are replaced, not added to
    assert svc.ingest_nvidia_smi(H100, host="h100-a").status == "unchanged"
    assert _readings(svc) == stored
    owners = owners_from_events(H100 / "workload_events.jsonl", namespace="lab")
    assert svc.ingest_nvidia_smi(H100, host="h100-a", owners=owners).status == "loaded"
    assert _readings(svc) == stored


def test_another_sources_readings_stay(make_service: Any) -> None:
    """The agent's energy counter readings of the same host in the same span are not the
    nvidia-smi log's to replace: ingesting (and re-reading) the log keeps both."""
    from aifinops.tables import GPU_ENERGY, rows_table

    svc = make_service()
    first = round(nvidia_smi_time("2026/11/23 10:35:00.000") * 1000)
    agent = [{"ts_ms": first + i * 60_000, "node_id": "h100-a", "gpu_id": UUID,
              "energy_mj": 1000.0 * i, "source": "agent"} for i in range(3)]  # fmt: skip
    svc.store.insert_arrow("gpu_energy", rows_table(agent, GPU_ENERGY))
    assert svc.ingest_nvidia_smi(H100, host="h100-a").status == "loaded"
    owners = owners_from_events(H100 / "workload_events.jsonl", namespace="lab")
    assert svc.ingest_nvidia_smi(H100, host="h100-a", owners=owners).status == "loaded"
    kept = [r for r in _readings(svc) if r[6] == "agent"]
    assert [(r[0], r[3]) for r in kept] == [(a["ts_ms"], a["energy_mj"]) for a in agent]
    assert sum(1 for r in _readings(svc) if r[6] == "nvidia-smi") == 390
