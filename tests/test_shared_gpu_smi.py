"""nvidia-smi logs: pmon's `-` under the `usage` split (issue 12, item 2) and 1-minute steps
that hold no more than a minute per GPU (issue 12, item 5).

Expected values are worked by hand from the hand-made logs below, or read from the raw
capture files, never from the code's own output."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from tests.conftest import H100

UUID = "GPU-11111111-2222-3333-4444-555555555555"
QUERY_HEAD = (
    "timestamp, index, uuid, name, utilization.gpu [%], memory.used [MiB], power.draw [W]\n"
)
APPS_HEAD = "timestamp, gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n"
PMON_HEAD = (
    "#Date        Time         gpu         pid   type     sm    mem    enc    dec    jpg"
    "    ofa     fb   ccpm    command\n"
    "#YYYYMMDD    HH:MM:SS     Idx           #    C/G      %      %      %      %      %"
    "      %     MB     MB    name\n"
)


def write_logs(directory: Path, sm: dict[int, tuple[str, str]]) -> Path:
    """Four 1-second samples from 10:00:00 of one GPU held by pids 101 and 102 at each;
    `sm[second] = (sm of 101, sm of 102)` as pmon prints them."""
    directory.mkdir()
    query, apps, pmon = [QUERY_HEAD], [APPS_HEAD], [PMON_HEAD]
    for sec in range(4):
        stamp = f"2026/11/23 10:00:0{sec}.000"
        query.append(f"{stamp}, 0, {UUID}, NVIDIA H100 80GB HBM3, 90 %, 4000 MiB, 300.00 W\n")
        for pid in (101, 102):
            apps.append(f"{stamp}, {UUID}, {pid}, python3, 2000 MiB\n")
        for pid, value in zip((101, 102), sm[sec], strict=True):
            pmon.append(
                f" 20261123    10:00:0{sec}       0    {pid}     C    {value:>3}      -      -"
                f"      -      -      -   2000      0    python3\n"
            )
    (directory / "query_gpu.csv").write_text("".join(query))
    (directory / "compute_apps.csv").write_text("".join(apps))
    (directory / "pmon.txt").write_text("".join(pmon))
    return directory


def held_by_second(svc: Any, column: str) -> dict[tuple[int, str], Decimal]:
    out: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for ts, workload, held in svc.store.raw(
        f"SELECT ts_ms, workload_id, {column} FROM gpu_usage WHERE workload_id IS NOT NULL"
    ):
        out[(ts // 1000 % 60, workload)] += held
    return out


def test_pmon_dash_is_zero_sm_not_unknown(make_service: Any, tmp_path: Path) -> None:
    # seconds 0-1: 101 listed with `-` (no SM activity sampled), 102 at 80 %: all of the
    # sample's usage share is 102's. Seconds 2-3: both `-`: nobody measured above zero, so
    # the sample is split evenly. Under `request` every sample is split evenly.
    logs = write_logs(
        tmp_path / "logs", {0: ("-", "80"), 1: ("-", "80"), 2: ("-", "-"), 3: ("-", "-")}
    )
    svc = make_service({"prices": {"gpu_models": {"H100": 4.00}}})
    assert svc.ingest_nvidia_smi(logs, host="h").status == "loaded"
    a, b = "h/pid-101", "h/pid-102"
    use = held_by_second(svc, "held_use")
    for sec in (0, 1):  # each sample lasts 1 s (the gap to the next; the last: the median)
        assert use[(sec, a)] == 0 and use[(sec, b)] == 1000
    for sec in (2, 3):
        assert use[(sec, a)] == 500 and use[(sec, b)] == 500
    req = held_by_second(svc, "held_req")
    assert all(req[(sec, w)] == 500 for sec in range(4) for w in (a, b))

    report = svc.cost(window="2026-11-23T10:00:00Z,2026-11-23T10:01:00Z", by=["workload"],
                      shared_gpu="usage")  # fmt: skip
    hours = {r.key["workload"]: r.gpu_hours * 3600 for r in report.rows}
    assert hours[a] == pytest.approx(Decimal(1)) and hours[b] == pytest.approx(Decimal(3))


def test_pmon_numbers_still_split_by_sm(make_service: Any, tmp_path: Path) -> None:
    # 20 % and 60 %: a quarter and three quarters of each 1-second sample
    logs = write_logs(tmp_path / "logs", {s: ("20", "60") for s in range(4)})
    svc = make_service({"prices": {"gpu_models": {"H100": 4.00}}})
    svc.ingest_nvidia_smi(logs, host="h")
    use = held_by_second(svc, "held_use")
    assert all(use[(s, "h/pid-101")] == 250 and use[(s, "h/pid-102")] == 750 for s in range(4))


def capture_times() -> list[float]:
    """The device samples' times (seconds) read straight from the capture's query-gpu CSV."""
    lines = (H100 / "nvidia_smi_query_gpu.csv").read_text().splitlines()[1:]
    return sorted(
        datetime.strptime(line.split(",")[0], "%Y/%m/%d %H:%M:%S.%f")
        .replace(tzinfo=UTC)
        .timestamp()
        for line in lines
        if line.strip()
    )


def test_one_minute_steps_hold_at_most_a_minute_per_gpu(make_service: Any) -> None:
    svc = make_service({"prices": {"gpu_models": {"H100": 4.00}}})
    svc.ingest_nvidia_smi(H100, host="h100-lab-01")
    window = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"
    steps = svc.cost(window=window, step="1m", by=["node"])
    per_step: dict[str | None, Decimal] = defaultdict(Decimal)
    for row in steps.rows:
        per_step[row.start] += row.gpu_hours * 3600
    # one GPU: no step holds more than its 60 seconds (it held 60.13 before)
    assert per_step and max(per_step.values()) <= Decimal("60.000000001")
    # a full minute inside the capture holds the whole minute
    assert per_step["2026-11-23T10:36:00Z"] == pytest.approx(Decimal(60), abs=Decimal("1e-9"))

    # the whole window is unchanged: first sample to last, plus the last sample's median
    # interval (the sample durations are the gaps between samples)
    times = capture_times()
    total = times[-1] - times[0] + median(b - a for a, b in pairwise(times))
    whole = svc.cost(window=window, by=["node"])
    whole_s = sum(r.gpu_hours for r in whole.rows) * 3600
    assert float(whole_s) == pytest.approx(total, abs=0.01)
    assert sum(per_step.values()) == pytest.approx(whole_s, abs=Decimal("0.01"))
    assert steps.asset_cost == pytest.approx(whole.asset_cost, abs=Decimal("1e-6"))

    # each row of the store: no sample crosses a minute boundary, one row per sample
    rows = svc.store.raw("SELECT ts_ms, sum(held_req) FROM gpu_usage GROUP BY ts_ms ORDER BY ts_ms")
    assert len(rows) == len(times)
    for ts, held in rows:
        assert ts // 60_000 == (ts + int(held) - 1) // 60_000
