"""The node agent, replaying the real NVML stream of the H100 capture through the whole
pipeline: owners from cgroups (pod, Slurm job, user), the spool, the store; and restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifinops.sources.nvml import OwnerResolver
from tests.conftest import Served
from tests.test_h100_capture import expected_request_seconds

NVML = Path(__file__).parent / "data" / "nvml" / "nvml_samples.jsonl"
UUID = "GPU-880d8b20-7208-1c8b-3171-9a1a0239ad7f"
NAMES = {UUID: "NVIDIA H100 80GB HBM3"}
WINDOW = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"
PODS = {  # pid -> (pod uid, pod), as the capture's workload_events name them
    732: ("6f1c2b9e-8d3a-4c5e-9f10-2a3b4c5d6e7f", "llm-serve-7d9f4"),
    937: ("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "chat-api-5c6d8"),
    938: ("11223344-5566-4788-99aa-bbccddeeff00", "finetune-lora-1"),
}


def fake_proc(root: Path) -> tuple[Path, Path]:
    """/proc/<pid>/{cgroup,status} as a node shows them: pods under kubepods (cgroup v2,
    systemd driver), the training run as Slurm job 4242, the notebook as user alice."""
    proc = root / "proc"
    for pid, (uid, _) in PODS.items():
        d = proc / str(pid)
        d.mkdir(parents=True)
        slice_uid = uid.replace("-", "_")
        d.joinpath("cgroup").write_text(
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{slice_uid}.slice/cri-containerd-4f2a9c.scope\n"
        )
    d = proc / "817"
    d.mkdir()
    d.joinpath("cgroup").write_text(
        "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n"
    )
    d = proc / "896"
    d.mkdir()
    d.joinpath("cgroup").write_text("0::/user.slice/user-1001.slice/session-3.scope\n")
    d.joinpath("status").write_text("Name:\tpython\nUid:\t1001\t1001\t1001\t1001\n")
    passwd = root / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\n")
    return proc, passwd


def _agent_service(make_service: Any, tmp_path: Path, name: str = "agent.duckdb") -> Any:
    svc = make_service({"prices": {"gpu_models": {"H100": 4.00}}}, name=name)
    # the pods' UIDs are known from Kubernetes; the agent finds them in the cgroups
    from aifinops.sources import facts

    rows = [
        {"workload_id": f"lab/{pod}", "kind": "pod", "namespace": "lab", "name": pod,
         "uid": uid, "labels": {"team": "t"}, "source": "kubernetes"}
        for uid, pod in PODS.values()
    ]  # fmt: skip
    svc.store.upsert_arrow("workloads", facts.rows_table(rows, facts.WORKLOADS), "workload_id")
    return svc


def _run(svc: Any, tmp_path: Path, ticks: int | None = None, **kw: Any) -> Any:
    proc, passwd = fake_proc(tmp_path / "node") if not (tmp_path / "node").exists() else (
        tmp_path / "node" / "proc", tmp_path / "node" / "passwd")  # fmt: skip
    return svc.agent(
        spool=tmp_path / "spool",
        host="h100-lab-01",
        replay=NVML,
        gpu_names=NAMES,
        ticks=ticks,
        proc_root=proc,
        passwd=passwd,
        user_teams={"alice": "data-science"},
        per_segment=50,
        sleep=False,
        **kw,
    )


def test_replay_owns_and_costs_like_the_compute_apps(make_service: Any, tmp_path: Path) -> None:
    svc = _agent_service(make_service, tmp_path)
    stats = _run(svc, tmp_path)
    samples = NVML.read_text().count('"event": "sample"')
    assert stats.ticks == stats.records == samples == 391 and stats.failures == []
    assert stats.shipped == 8  # 50 records a segment: 7 full ones and the last 41
    assert not list((tmp_path / "spool").iterdir())  # everything stored, nothing left
    report = svc.cost(window=WINDOW, by=["workload"])
    hours = {r.key["workload"]: float(r.gpu_hours) * 3600 for r in report.rows}
    by_pid = {
        732: "lab/llm-serve-7d9f4",
        817: "slurm/4242/h100-lab-01",
        896: "user/alice@h100-lab-01",
        937: "lab/chat-api-5c6d8",
        938: "lab/finetune-lora-1",
    }
    # what nvidia-smi's compute-apps snapshots say each process held, within 2 %
    for pid, seconds in expected_request_seconds().items():
        assert hours[by_pid[pid]] == pytest.approx(seconds, rel=0.02), by_pid[pid]
    teams = {r.key["team"]: r for r in svc.cost(window=WINDOW, by=["team"]).rows}
    assert "data-science" in teams  # alice's notebook, from the user-to-team map
    node = svc.store.raw("SELECT gpu_model, gpu_count, util_signal FROM nodes")
    assert node == [("NVIDIA H100 80GB HBM3", 1, "NVML_GPM_METRIC_SM_UTIL")]
    # energy: the counter's increase over the capture, read off the first and last records
    first, last = svc.store.raw(
        "SELECT min(energy_mj), max(energy_mj) FROM gpu_energy WHERE source = 'agent'"
    )[0]
    assert (first, last) == (14026646.0, _last_energy())


def _last_energy() -> float:
    import json

    lines = [json.loads(x) for x in NVML.read_text().splitlines() if x.strip()]
    return float([x for x in lines if x.get("event") == "sample"][-1]["energy_mj"])


def test_restart_loses_nothing_and_counts_nothing_twice(make_service: Any, tmp_path: Path) -> None:
    once = _agent_service(make_service, tmp_path / "a", name="once.duckdb")
    (tmp_path / "a").mkdir(exist_ok=True)
    _run(once, tmp_path / "a")
    twice = _agent_service(make_service, tmp_path / "b", name="twice.duckdb")
    (tmp_path / "b").mkdir(exist_ok=True)
    # a run killed after 120 ticks: segments 1-2 stored, the third open on disk
    from aifinops.sources import nvml

    proc, passwd = fake_proc(tmp_path / "b" / "node")
    pods = {uid: f"lab/{pod}" for uid, pod in PODS.values()}
    teams = {"alice": "data-science"}
    resolver = OwnerResolver(
        "h100-lab-01", proc_root=proc, passwd=passwd, pods=pods, user_teams=teams
    )
    spool = nvml.Spool(tmp_path / "b" / "spool", per_segment=50)
    shipped: list[str] = []

    def ship(segment: Path) -> None:
        twice.ingest_agent_segment(segment)
        shipped.append(segment.name)

    crashed = nvml.Agent("h100-lab-01", nvml.ReplaySampler(NVML, NAMES), resolver, spool, ship)
    crashed.run(120, sleep=False)  # no stop(): the process died
    open_parts = list((tmp_path / "b" / "spool").glob("open-*.part"))
    assert len(open_parts) == 1 and shipped == ["seg-000000001.jsonl", "seg-000000002.jsonl"]
    # the restarted agent ships the open segment first, then samples on from tick 121
    restarted_sampler = nvml.ReplaySampler(NVML, NAMES)
    ticks = restarted_sampler.ticks()
    for _ in range(120):
        next(ticks)

    class Rest:
        def ticks(self) -> Any:
            return ticks

    again = nvml.Agent("h100-lab-01", Rest(), resolver, nvml.Spool(spool.dir, 50), ship)
    again.run(sleep=False)
    again.stop()
    assert not list(spool.dir.iterdir())
    for table in ("gpu_usage", "node_presence", "gpu_energy"):
        assert twice.store.count(table) == once.store.count(table), table
    a = {r.key["workload"]: r.total_cost for r in once.cost(window=WINDOW, by=["workload"]).rows}
    b = {r.key["workload"]: r.total_cost for r in twice.cost(window=WINDOW, by=["workload"]).rows}
    assert a == b
    # a segment shipped a second time (crash after storing, before deleting) counts once,
    # and one that covers samples already stored replaces them
    before = twice.store.count("gpu_usage")
    first_segment = tmp_path / "b" / "copy.jsonl"
    records = [crashed.record(s[0]) for s in list(nvml.ReplaySampler(NVML, NAMES).ticks())[:10]]
    import json

    first_segment.write_text("".join(json.dumps(r) + "\n" for r in records))
    twice.ingest_agent_segment(first_segment)
    after_one = twice.store.count("gpu_usage")
    assert twice.ingest_agent_segment(first_segment).status == "unchanged"
    assert twice.store.count("gpu_usage") == after_one and after_one == before


def test_posting_to_a_server(make_service: Any, tmp_path: Path, served: Served) -> None:
    svc = _agent_service(make_service, tmp_path)
    served.routes["/api/v1/agent/segments"] = [(503, b"later"), (200, b"ok")]
    stats = _run(svc, tmp_path, ticks=60, server=served.url(""))
    # the first POST failed: that segment stays in the spool; the next flush sends it
    assert stats.failures and "HTTP 503" in stats.failures[0]
    assert served.hits["/api/v1/agent/segments"] >= 2
    assert svc.store.count("gpu_usage") == 0  # posted, not stored locally
