"""Cost per job and per processing minute (issue 16, seed features): job-queue counters read
from a worker's /metrics by the inference source, and Slurm jobs that ended, through the
same unit-cost engine as tokens (`cost --unit jobs|minutes`, `/metrics`).

The queue case: one node of two L4 GPUs at $4.00/GPU-h, the window [T0, T0 + 1h) in
one-minute samples. Pod dub/stt-0 (team dubbing) holds GPU-0 the whole hour: $4.00. Pod
dub/tts-0 (team voice) holds GPU-1 the first 30 minutes: $2.00; GPU-1 is idle after
(`__idle__`, $2.00). Each pod's exporter is scraped at T0 (the baseline), T0 + 15, 30 and
45 min, and at T0 + 60 min (outside the window: not counted).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.windows import from_ms
from aifinops.errors import UsageError
from aifinops.sources.serving.inference import read_counters
from tests.conftest import MIN, T0, load_facts, sample, window

PRICES = {"prices": {"gpu_models": {"L4": 4.00}}}
TIMES = [T0 + m * MIN for m in (0, 15, 30, 45, 60)]

# dub/stt-0: completed jobs 10, 25, 5 (the worker restarted), 17, then 60 after the window;
# failed 1, 3, 4, 9, 12 (never counted); the job-duration histogram's sum in seconds
STT = {"completed": [10, 25, 5, 17, 60], "failed": [1, 3, 4, 9, 12],
       "seconds": [600, 1800, 300, 1200, 9000]}  # fmt: skip
# dub/tts-0: the other spellings, `jobs_completed_total` (and `job_processed_total` with the
# same values, which must not count each job twice) and `job_processing_seconds_total`
TTS = {"completed": [0, 4, 8, 8, 50], "seconds": [0, 300, 600, 600, 5000]}


def stt_scrape(i: int) -> str:
    done, failed, secs = STT["completed"][i], STT["failed"][i], STT["seconds"][i]
    lab = 'queue_name="stt",app="stt-worker"'  # queue_name names the queue before app
    return (
        "# HELP job_completed_total Jobs completed\n# TYPE job_completed_total counter\n"
        f"job_completed_total{{{lab}}} {done}\n"
        "# HELP job_failed_total Jobs failed\n# TYPE job_failed_total counter\n"
        f"job_failed_total{{{lab}}} {failed}\n"
        "# HELP job_duration_seconds Time to process a job\n"
        "# TYPE job_duration_seconds histogram\n"
        f'job_duration_seconds_bucket{{{lab},le="60"}} {done // 2}\n'
        f'job_duration_seconds_bucket{{{lab},le="+Inf"}} {done}\n'
        f"job_duration_seconds_sum{{{lab}}} {secs}\n"
        f"job_duration_seconds_count{{{lab}}} {done}\n"
        "# TYPE redis_queue_depth gauge\n"
        f'redis_queue_depth{{queue_name="stt",queue_type="stt"}} {3 + i}\n'
    )


def tts_scrape(i: int) -> str:
    done, secs = TTS["completed"][i], TTS["seconds"][i]
    return (
        f'jobs_completed_total{{queue="tts"}} {done}\n'
        f'job_processed_total{{queue="tts"}} {done}\n'
        f'job_processing_seconds_total{{queue="tts"}} {secs}\n'
    )


def pod(name: str, team: str) -> dict[str, Any]:
    return {"workload_id": f"dub/{name}", "kind": "pod", "namespace": "dub", "name": name,
            "node_id": "srv", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
            "labels": {"team": team}, "source": "test"}  # fmt: skip


def queues(svc: Any, tmp_path: Path) -> None:
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 2,
            "util_signal": "test-signal", "source": "test"}  # fmt: skip
    samples = [
        r
        for t in range(T0, T0 + 60 * MIN, MIN)
        for r in sample(t, "srv", "GPU-0", [("dub/stt-0", 1.0, 1.0, 0.5)])
        + sample(t, "srv", "GPU-1",
                 [("dub/tts-0", 1.0, 1.0, 0.5) if t < T0 + 30 * MIN else (None, 1.0, 1.0, 0.0)])
    ]  # fmt: skip
    load_facts(svc, [node], [pod("stt-0", "dubbing"), pod("tts-0", "voice")], samples)
    for i, at in enumerate(TIMES):
        for name, text in (("stt-0", stt_scrape(i)), ("tts-0", tts_scrape(i))):
            path = tmp_path / f"{name}-{i}.prom"
            path.write_text(text)
            svc.ingest_inference([str(path)], at=from_ms(at).isoformat(), pod=f"dub/{name}")


def rows_by(report: Any, *dims: str) -> dict[tuple[str, ...], Any]:
    return {tuple(r.key[d] for d in dims): r for r in report.rows if r.units is not None}


def test_job_counters_read_from_an_exposition() -> None:
    got = read_counters(stt_scrape(1), "stt")
    assert got.server == "jobs"
    assert got.values == {(None, None, "stt", "jobs"): 25.0,
                          (None, None, "stt", "processing_seconds"): 1800.0}  # fmt: skip
    got = read_counters(tts_scrape(2), "tts")  # one spelling of completed jobs, not both
    assert got.values == {(None, None, "tts", "jobs"): 8.0,
                          (None, None, "tts", "processing_seconds"): 600.0}  # fmt: skip
    # a queue named by `service` or `app` where no queue label is given
    got = read_counters('job_completed_total{service="lipsync",app="x"} 3\n', "ls")
    assert got.values == {(None, None, "lipsync", "jobs"): 3.0}


def test_cost_per_job_and_minute_by_queue_team_and_workload(
    make_service: Any, tmp_path: Path
) -> None:
    svc = make_service(PRICES)
    queues(svc, tmp_path)
    # stt: jobs 10 (baseline) -> 25: +15, -> 5 (a reset: +5), -> 17: +12 = 32 jobs;
    #      seconds 600 -> 1800: +1200, -> 300 (reset: +300), -> 1200: +900 = 2400 s = 40 min
    #      $4.00 / 32 jobs = $0.125 a job; $4.00 / 40 min = $0.10 a minute
    # tts: jobs 0 -> 4 -> 8 -> 8 = 8 jobs; seconds 0 -> 300 -> 600 -> 600 = 600 s = 10 min
    #      $2.00 / 8 jobs = $0.25 a job; $2.00 / 10 min = $0.20 a minute
    want = {
        "stt": (Decimal(4), 32.0, 2400.0, Decimal("0.125"), Decimal("0.10")),
        "tts": (Decimal(2), 8.0, 600.0, Decimal("0.25"), Decimal("0.20")),
    }
    team_of = {"stt": "dubbing", "tts": "voice"}
    for unit in ("jobs", "minutes"):
        by_queue = rows_by(svc.cost(window=window(1), by=["model"], unit=unit), "model")
        by_team = rows_by(svc.cost(window=window(1), by=["team"], unit=unit), "team")
        both = rows_by(svc.cost(window=window(1), by=["team", "model"], unit=unit),
                       "team", "model")  # fmt: skip
        per_pod = rows_by(svc.cost(window=window(1), by=["workload"], unit=unit), "workload")
        assert set(by_queue) == {("stt",), ("tts",)}  # __idle__ takes no units
        for q, (cost, jobs, seconds, per_job, per_min) in want.items():
            for row in (by_queue[(q,)], by_team[(team_of[q],)], both[(team_of[q], q)],
                        per_pod[(f"dub/{q}-0",)]):  # fmt: skip
                assert row.total_cost == cost
                assert (row.units.jobs, row.units.processing_seconds) == (jobs, seconds)
                costs = row.units.costs(row.total_cost, row.gpu_hours)
                assert costs["cost_per_job"] == pytest.approx(float(per_job), rel=1e-12)
                assert costs["cost_per_processing_minute"] == pytest.approx(
                    float(per_min), rel=1e-12
                )
    with pytest.raises(UsageError, match="jobs are counted per workload, not by node"):
        svc.cost(window=window(1), by=["team", "node"], unit="jobs")
    with pytest.raises(UsageError, match="unknown unit"):
        svc.cost(window=window(1), by=["team"], unit="songs")


SACCT = (
    "JobID|JobName|User|Account|Partition|AllocTRES|Start|End|NodeList|State\n"
    "81|a|ada|physics|gpu|gres/gpu=1|2026-11-23T00:00:00|2026-11-23T00:30:00|gpu01|COMPLETED\n"
    "82|b|ada|physics|gpu|gres/gpu=1|2026-11-23T00:30:00|2026-11-23T00:45:00|gpu01|COMPLETED\n"
    "83|c|ada|physics|gpu|gres/gpu=1|2026-11-23T00:00:00|Unknown|gpu01|RUNNING\n"
    "84|d|bob|bio|gpu|gres/gpu=2,node=2|2026-11-23T00:00:00|2026-11-23T00:15:00|gpu[02-03]|"
    "COMPLETED\n"
    "85|e|bob|bio|gpu|gres/gpu=1|2026-11-21T20:00:00|2026-11-21T23:00:00|gpu02|COMPLETED\n"
)


def test_slurm_cost_per_job(make_service: Any, tmp_path: Path) -> None:
    """Slurm jobs that ended in the window are the jobs; the cost is what the scope spent in
    the window (as for job counters: the work of jobs still running is in it)."""
    svc = make_service(PRICES)
    nodes = [{"node_id": n, "gpu_model": "NVIDIA L4", "gpu_count": c, "source": "test"}
             for n, c in (("gpu01", 2), ("gpu02", 1), ("gpu03", 1))]  # fmt: skip
    held = [  # (node, GPU, job, first minute, end minute)
        ("gpu01", "GPU-0", "81", 0, 30), ("gpu01", "GPU-0", "82", 30, 45),
        ("gpu01", "GPU-1", "83", 0, 60), ("gpu02", "GPU-0", "84", 0, 15),
        ("gpu03", "GPU-0", "84", 0, 15),
    ]  # fmt: skip
    samples = [
        r
        for node, gpu, job, first, end in held
        for m in range(first, end)
        for r in sample(T0 + m * MIN, node, gpu, [(f"slurm/{job}/{node}", 1.0, 1.0, 0.5)])
    ]
    load_facts(svc, nodes, [], samples)
    sacct = tmp_path / "sacct.txt"
    sacct.write_text(SACCT)
    svc.ingest_slurm([sacct])
    # physics: 81 $2.00 + 82 $1.00 + 83 (running) $4.00 = $7.00 over jobs 81 and 82 = $3.50
    # bio: 84 on two nodes, $1.00 each = $2.00 over one job (half on each node) = $2.00;
    # 85 ended before the window (and before the 24 hours /metrics covers)
    teams = rows_by(svc.cost(window=window(1), by=["team"], unit="jobs"), "team")
    assert {k: (r.total_cost, r.units.jobs) for k, r in teams.items()} == {
        ("physics",): (Decimal(7), 2.0), ("bio",): (Decimal(2), 1.0)
    }  # fmt: skip
    assert teams[("physics",)].to_dict()["units"]["cost_per_job"] == pytest.approx(3.5)
    pods = rows_by(svc.cost(window=window(1), by=["workload"], unit="jobs"), "workload")
    assert {k[0]: r.units.jobs for k, r in pods.items()} == {
        "slurm/81/gpu01": 1.0, "slurm/82/gpu01": 1.0,
        "slurm/84/gpu02": 0.5, "slurm/84/gpu03": 0.5,
    }  # fmt: skip
    assert pods[("slurm/84/gpu02",)].units.costs(Decimal(1), Decimal(0))[
        "cost_per_job"
    ] == pytest.approx(2.0)
    from prometheus_client.parser import text_string_to_metric_families

    from aifinops.outputs.metrics import ServerMetrics

    text = ServerMetrics(svc.metrics_snapshot, ttl=0).text()[0].decode()
    got = {tuple(sorted(s.labels.items())): s.value
           for f in text_string_to_metric_families(text) for s in f.samples
           if s.name == "ai_finops_cost_per_job"}  # fmt: skip
    assert got == {
        (("queue", "__unallocated__"), ("team", "bio")): pytest.approx(2.0),
        (("queue", "__unallocated__"), ("team", "physics")): pytest.approx(3.5),
    }


def test_metrics_and_cli(make_service: Any, tmp_path: Path, cli: Any) -> None:
    svc = make_service(PRICES)
    queues(svc, tmp_path)
    from prometheus_client.parser import text_string_to_metric_families

    from aifinops.outputs.metrics import ServerMetrics

    text = ServerMetrics(svc.metrics_snapshot, ttl=0).text()[0].decode()
    assert "# HELP ai_finops_cost_per_job Cost per completed job" in text
    assert "# HELP ai_finops_cost_per_processing_minute Cost per minute" in text
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples
           if s.name.startswith("ai_finops_cost_per_")}  # fmt: skip
    # the newest 24 hours hold the one hour above: the same figures as by team and queue
    assert got == {
        ("ai_finops_cost_per_job", (("queue", "stt"), ("team", "dubbing"))): 0.125,
        ("ai_finops_cost_per_job", (("queue", "tts"), ("team", "voice"))): 0.25,
        ("ai_finops_cost_per_processing_minute", (("queue", "stt"), ("team", "dubbing"))):
            pytest.approx(0.1, rel=1e-12),
        ("ai_finops_cost_per_processing_minute", (("queue", "tts"), ("team", "voice"))):
            pytest.approx(0.2, rel=1e-12),
    }  # fmt: skip
    svc.close()
    config = tmp_path / "prices.yaml"
    config.write_text(json.dumps(PRICES))
    db = str(tmp_path / "store.duckdb")
    base = ("--db", db, "--config", str(config), "cost", "--window", window(1), "--by",
            "team,model")  # fmt: skip
    out = cli(*base, "--unit", "jobs", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {tuple(r["key"].values()): r["units"] for r in json.loads(out.stdout)["rows"]
            if "units" in r}  # fmt: skip
    assert rows[("dubbing", "stt")]["jobs"] == 32 and rows[("voice", "tts")]["jobs"] == 8
    assert rows[("dubbing", "stt")]["cost_per_job"] == 0.125
    out = cli(*base, "--unit", "minutes", "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = {(r["team"], r["model"]): r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert float(table[("voice", "tts")]["cost_per_processing_minute"]) == pytest.approx(0.2)
    assert float(table[("voice", "tts")]["processing_seconds"]) == 600
    out = cli(*base, "--unit", "minutes", cwd=tmp_path)
    assert out.returncode == 0 and "$/job" in out.stdout and "$/min" in out.stdout
    bad = cli("--db", db, "cost", "--window", window(1), "--by", "node", "--unit", "jobs",
              cwd=tmp_path)  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "jobs are counted per workload" in bad.stderr + bad.stdout


def test_a_worker_of_two_queues_is_split_by_processing_time(
    make_service: Any, tmp_path: Path
) -> None:
    """One pod (no model label) works two queues: its $4.00 hour is split by the processing
    time each queue counted (decision 0012's split, jobs having no tokens or requests)."""
    svc = make_service(PRICES)
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 1, "source": "test"}
    samples = [r for t in range(T0, T0 + 60 * MIN, MIN)
               for r in sample(t, "srv", "GPU-0", [("dub/multi-0", 1.0, 1.0, 0.5)])]  # fmt: skip
    load_facts(svc, [node], [pod("multi-0", "dubbing")], samples)
    # queue mt: 3 jobs in 900 s; queue lipsync: 9 jobs in 300 s (zero at T0, the baseline)
    for i, scale in enumerate((0, 1)):
        path = tmp_path / f"multi-{i}.prom"
        path.write_text(
            f'job_completed_total{{queue="mt"}} {3 * scale}\n'
            f'job_completed_total{{queue="lipsync"}} {9 * scale}\n'
            f'job_processing_seconds_total{{queue="mt"}} {900 * scale}\n'
            f'job_processing_seconds_total{{queue="lipsync"}} {300 * scale}\n'
        )
        at = from_ms(T0 + 30 * MIN * i).isoformat()
        svc.ingest_inference([str(path)], at=at, pod="dub/multi-0", server="jobs")
    report = svc.cost(window=window(1), by=["model"], unit="jobs")
    rows = rows_by(report, "model")
    # mt: 900 / 1,200 s of $4.00 = $3.00, 3 jobs ($1.00 a job), 15 min ($0.20 a minute);
    # lipsync: the $1.00 left, 9 jobs ($0.111... a job), 5 min ($0.20 a minute)
    assert {k[0]: r.total_cost for k, r in rows.items()} == {"mt": Decimal(3), "lipsync": 1}
    mt = rows[("mt",)].units.costs(Decimal(3), Decimal(1))
    assert mt["cost_per_job"] == 1.0 and mt["cost_per_processing_minute"] == pytest.approx(0.2)
    lipsync = rows[("lipsync",)].units.costs(Decimal(1), Decimal(1))
    assert lipsync["cost_per_job"] == pytest.approx(1 / 9)
    assert "dub/multi-0 by job processing time" in " ".join(report.notes)
