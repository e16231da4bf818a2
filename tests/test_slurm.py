"""Slurm accounting: both sacct formats, hostlists, jobs charged for the GPUs they held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from aifinops.sources.inventory.slurm import expand_hostlist, read_sacct

DATA = Path(__file__).parent / "data" / "slurm"
H = 3_600_000
EIGHT = 1_795_420_800_000  # 2026-11-23T08:00:00Z


def _summary(path: Path) -> list[tuple[Any, ...]]:
    acct = read_sacct(path)
    assert acct.problems == []
    return [
        (j.job_id, j.account, j.user, j.partition, j.qos, j.state, j.nodes, j.start_ms, j.end_ms,
         j.gpus, j.gpu_type, j.cpus, j.mem_gib, j.steps)
        for j in acct.jobs
    ]  # fmt: skip


def test_both_formats_read_the_same_jobs() -> None:
    expected = [
        # 08:00-10:00Z on two nodes, 16 H100 (8 per node), 64 CPUs, 512 GiB, two steps
        ("4101", "physics", "ada", "gpu", "normal", "COMPLETED", ["gpu01", "gpu02"],
         EIGHT, EIGHT + 2 * H, 16, "h100", 64.0, 512.0, 2),
        # still running since 09:00Z: no end
        ("4102", "bio", "grace", "gpu", "high", "RUNNING", ["gpu03"],
         EIGHT + H, None, 1, "a100", 8.0, 64.0, 0),
        ("4103", "cs", "alan", "cpu", "normal", "FAILED", ["cpu7"],
         EIGHT + 3200_000, EIGHT + 3260_000, 0, None, 2.0, 4.0, 0),
    ]  # fmt: skip
    assert _summary(DATA / "sacct.json") == expected
    assert _summary(DATA / "sacct-parsable2.txt") == expected


def test_parsable2_in_the_cluster_time_zone(tmp_path: Path) -> None:
    acct = read_sacct(DATA / "sacct-parsable2.txt", timezone="Europe/Berlin")
    assert acct.jobs[0].start_ms == EIGHT - H  # 08:00 in Berlin (UTC+1 in November)


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("gpu[8-10],login1", ["gpu8", "gpu9", "gpu10", "login1"]),
        ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
        ("node1", ["node1"]),
        ("", []),
    ],
)
def test_hostlists(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


def _scrape(ts_s: int, gpu01_jobs: tuple[str | None, str | None] = (None, None)) -> str:
    lines = []
    for gpu, job in enumerate(gpu01_jobs):
        labels = f'gpu="{gpu}",UUID="GPU-{gpu}",Hostname="gpu01",modelName="NVIDIA H100 80GB HBM3"'
        if job:
            labels += f',hpc_job="{job}"'
        lines.append(f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{labels}}} 0.5 {ts_s * 1000}")
    return "\n".join(lines) + "\n"


def test_whole_node_job_takes_the_unowned_samples(make_service: Any, tmp_path: Path) -> None:
    svc = make_service({"prices": {"gpu_models": {"H100": 3.60}}})
    scrape = tmp_path / "gpu01.prom"
    # two one-minute scrapes of gpu01 (2 GPUs, no job labels) at 08:30 and 08:31
    scrape.write_text(_scrape(EIGHT // 1000 + 1800) + _scrape(EIGHT // 1000 + 1860))
    svc.ingest_dcgm([str(scrape)], interval="60s")
    sacct = tmp_path / "sacct.txt"
    sacct.write_text(
        "JobID|JobName|User|Account|Partition|AllocTRES|Start|End|NodeList|State\n"
        "77|train|ada|physics|gpu|cpu=8,gres/gpu=2,mem=64G,node=1|2026-11-23T08:00:00|"
        "2026-11-23T09:00:00|gpu01|COMPLETED\n"
    )
    (result,) = svc.ingest_slurm([sacct])
    assert "4 unowned GPU sample rows given to their jobs" in result.notes
    report = svc.cost(window="2026-11-23T08:30:00Z,2026-11-23T08:32:00Z", by=["team"])
    cost = {r.key["team"]: float(r.total_cost) for r in report.rows}
    # 2 GPUs x 2 minutes at $3.60/h = 4 x $0.06
    assert cost == {"physics": pytest.approx(0.24, abs=1e-9)}
    owners = svc.store.raw("SELECT DISTINCT workload_id FROM gpu_usage")
    assert owners == [("slurm/77/gpu01",)]


def test_part_node_job_is_named_by_hpc_job(make_service: Any, tmp_path: Path) -> None:
    svc = make_service({"prices": {"gpu_models": {"H100": 3.60}}})
    sacct = tmp_path / "sacct.txt"
    sacct.write_text(
        "JobID|JobName|User|Account|Partition|AllocTRES|Start|End|NodeList|State\n"
        "78|infer|grace|bio|gpu|gres/gpu:h100=1|2026-11-23T08:00:00|Unknown|gpu01|RUNNING\n"
    )
    svc.ingest_slurm([sacct])
    scrape = tmp_path / "gpu01.prom"
    scrape.write_text(_scrape(EIGHT // 1000 + 1800, ("78", None)))
    svc.ingest_dcgm([str(scrape)], interval="60s")
    report = svc.cost(window="2026-11-23T08:30:00Z,2026-11-23T08:31:00Z", by=["team"])
    cost = {r.key["team"]: float(r.total_cost) for r in report.rows}
    # GPU 0 held by job 78 (team bio) for a minute; GPU 1 idle
    assert cost == {"bio": pytest.approx(0.06, abs=1e-9), "__idle__": pytest.approx(0.06)}
    kind, labels = svc.store.raw(
        "SELECT kind, labels FROM workloads WHERE workload_id = 'slurm/78/gpu01'"
    )[0]
    assert kind == "slurm-job" and dict(labels)["owner"] == "grace"


def test_bad_sacct_files(tmp_path: Path, make_service: Any) -> None:
    cut = tmp_path / "cut.json"
    cut.write_text((DATA / "sacct.json").read_text()[:900])
    with pytest.raises(InputError, match="not valid JSON \\(truncated\\?\\)") as info:
        read_sacct(cut)
    assert info.value.where == str(cut)
    other = tmp_path / "other.txt"
    other.write_text("timestamp, index, uuid\n2026/11/23 10:00:00, 0, GPU-1\n")
    with pytest.raises(InputError, match="not sacct output"):
        read_sacct(other)
    short = tmp_path / "short.txt"
    lines = (DATA / "sacct-parsable2.txt").read_text().splitlines()
    short.write_text("\n".join([lines[0], lines[1][:40], *lines[4:]]) + "\n")
    acct = read_sacct(short)
    assert [j.job_id for j in acct.jobs] == ["4102", "4103"]
    assert acct.problems == [f"{short}:2: 7 fields where the header has 11 (truncated?); skipped"]
    svc = make_service()
    (first,) = svc.ingest_slurm([short])
    (second,) = svc.ingest_slurm([short])
    assert first.status == "loaded" and second.status == "unchanged"
    assert svc.store.count("workloads") == 2
