"""Slurm accounting (`sacct --json`, `sacct --parsable2`) -> jobs charged like pods.

A job is a workload on each of its nodes, holding the GPUs of `AllocTRES` `gres/gpu`
(`gres/gpu:a100=2` gives the type) from its start to its end (open while it runs). The
account is the team, the user the owner; partition, QOS and GPU type are labels. Steps
(`123.batch`, `123.0`) belong to their job and are counted, not charged twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aifinops.core.windows import parse_time, to_ms
from aifinops.errors import InputError
from aifinops.sources.inputs import load_json

# the most hosts one bracket range of a hostlist may name (a damaged file's `n[1-99999999]`
# must not expand into a hundred million names)
MAX_HOSTS = 100_000
_MEM = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0, "P": 1024.0**2}


@dataclass
class Job:
    job_id: str
    name: str | None = None
    user: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    cluster: str | None = None
    state: str | None = None
    nodes: list[str] = field(default_factory=list)
    start_ms: int | None = None
    end_ms: int | None = None
    gpus: int = 0
    gpu_type: str | None = None
    cpus: float | None = None
    mem_gib: float | None = None
    steps: int = 0

    def workloads(self) -> list[dict[str, Any]]:
        """One workload per node; the nodes of a job share its labels and controller
        (`--by workload` lists each node, `controller` names the job)."""
        labels = {
            k: v
            for k, v in {
                "team": self.account,
                "owner": self.user,
                "slurm-account": self.account,
                "slurm-user": self.user,
                "slurm-partition": self.partition,
                "slurm-qos": self.qos,
                "gpu-type": self.gpu_type,
            }.items()
            if v
        }
        n = max(len(self.nodes), 1)
        rows = []
        for node in self.nodes or [None]:
            rows.append(
                {
                    "workload_id": self.workload_id(node),
                    "kind": "slurm-job",
                    "namespace": self.account,
                    "name": self.name,
                    "node_id": node,
                    "controller": f"slurm-job/{self.job_id}",
                    "start_ms": self.start_ms,
                    "end_ms": self.end_ms,
                    "gpu_request": self.gpus / n if self.gpus else None,
                    "gpu_resource": (f"gres/gpu:{self.gpu_type}" if self.gpu_type else "gres/gpu")
                    if self.gpus
                    else None,
                    "cpu_request": self.cpus / n if self.cpus else None,
                    "mem_request_gib": self.mem_gib / n if self.mem_gib else None,
                    "labels": labels,
                    "source": "slurm",
                }
            )
        return rows

    def workload_id(self, node: str | None) -> str:
        """`slurm/JOB/NODE`: the id dcgm-exporter's `hpc_job` label maps to on that node."""
        return f"slurm/{self.job_id}/{node}" if node else f"slurm/{self.job_id}"


@dataclass
class Accounting:
    jobs: list[Job]
    format: str  # json | parsable2
    problems: list[str] = field(default_factory=list)


def read_sacct(path: Path, timezone: str = "UTC") -> Accounting:
    from aifinops.sources.inputs import decode_text, read_input

    if not path.is_file():
        raise InputError("no such file", where=str(path))
    # UTF-8 (a BOM is fine) or UTF-16; binary or another encoding names its first bad byte
    text = decode_text(read_input(path), str(path), what="sacct output").removeprefix("\ufeff")
    head = text.lstrip()[:1]
    if head in ("{", "["):
        return _from_json(text, str(path))
    first = text.strip().splitlines()[0] if text.strip() else ""
    if "|" in first:
        return _from_parsable(text, str(path), ZoneInfo(timezone))
    raise InputError(
        "not sacct output: neither JSON nor a '|'-separated table with a header",
        where=str(path),
        hint="write it with `sacct --json` or `sacct --parsable2 --format=JobID,JobName,User,"
        "Account,Partition,AllocTRES,Start,End,NodeList,State`",
    )


# -- sacct --json ----------------------------------------------------------------------------
def _from_json(text: str, where: str) -> Accounting:
    doc = load_json(text, where)
    raw_jobs = doc.get("jobs") if isinstance(doc, dict) else doc
    if not isinstance(raw_jobs, list):
        raise InputError("no `jobs` list in this JSON", where=where, hint="use `sacct --json`")
    out = Accounting([], "json")
    for i, raw in enumerate(raw_jobs):
        try:
            out.jobs.append(_json_job(raw))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # one job the file mangled: reported and skipped, the others still count
            out.problems.append(f"{where}: jobs[{i}] skipped: {error!r}")
    return out


def _number(value: Any) -> int | None:
    """Slurm >= 23.02 writes numbers as {"set": true, "infinite": false, "number": N}."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if value in (None, ""):
        return None
    return int(value)


def _json_job(raw: dict[str, Any]) -> Job:
    assoc = raw.get("association") or {}
    state = raw.get("state") or {}
    current = state.get("current") if isinstance(state, dict) else state
    if isinstance(current, list):
        current = current[0] if current else None
    time = raw.get("time") or {}
    start = _number(time.get("start"))
    end = _number(time.get("end"))
    job = Job(
        job_id=str(_number(raw["job_id"])),
        name=raw.get("name"),
        user=raw.get("user") or assoc.get("user"),
        account=raw.get("account") or assoc.get("account"),
        partition=raw.get("partition") or assoc.get("partition") or None,
        qos=raw.get("qos") if isinstance(raw.get("qos"), str) else None,
        cluster=raw.get("cluster") or assoc.get("cluster"),
        state=current,
        nodes=expand_hostlist(raw.get("nodes") or ""),
        start_ms=start * 1000 if start else None,
        end_ms=end * 1000 if end else None,
    )
    if job.state in ("RUNNING", "PENDING") or (job.end_ms is not None and job.end_ms <= 0):
        job.end_ms = None
    tres = (raw.get("tres") or {}).get("allocated") or []
    for item in tres:
        kind, name, count = item.get("type"), item.get("name") or "", item.get("count")
        if count is None:
            continue
        if kind == "gres" and name.split(":")[0] == "gpu":
            if ":" in name:
                job.gpu_type = name.split(":", 1)[1]
                job.gpus = job.gpus or int(count)
            else:
                job.gpus = int(count)
        elif kind == "cpu":
            job.cpus = float(count)
        elif kind == "mem":
            job.mem_gib = float(count) / 1024  # sacct --json gives MiB
    job.steps = len(raw.get("steps") or [])
    return job


# -- sacct --parsable2 -----------------------------------------------------------------------
_COLUMNS = {
    "jobid": "job_id",
    "jobidraw": "job_id_raw",
    "jobname": "name",
    "user": "user",
    "account": "account",
    "partition": "partition",
    "qos": "qos",
    "cluster": "cluster",
    "alloctres": "tres",
    "start": "start",
    "end": "end",
    "nodelist": "nodes",
    "state": "state",
    "alloccpus": "cpus",
}


def _from_parsable(text: str, where: str, tz: ZoneInfo) -> Accounting:
    lines = [x for x in text.splitlines() if x.strip()]
    header = [h.strip().lower() for h in lines[0].split("|")]
    cols = {_COLUMNS[h]: i for i, h in enumerate(header) if h in _COLUMNS}
    missing = [c for c in ("job_id", "start") if c not in cols]
    if missing:
        raise InputError(
            f"the header has no {' or '.join(m.replace('_', '') for m in missing)} column",
            where=f"{where}:1",
            hint="use --format=JobID,JobName,User,Account,Partition,AllocTRES,Start,End,"
            "NodeList,State",
        )
    out = Accounting([], "parsable2")
    jobs: dict[str, Job] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("|")
        if len(cells) < len(header):
            out.problems.append(
                f"{where}:{number}: {len(cells)} fields where the header has {len(header)} "
                "(truncated?); skipped"
            )
            continue

        def cell(name: str, cells: list[str] = cells) -> str:
            i = cols.get(name)
            return cells[i].strip() if i is not None else ""

        try:
            job = _parsable_job(cell, tz, jobs)
        except ValueError as error:  # a cell the line mangled: reported, the rest count
            out.problems.append(f"{where}:{number}: {error}; skipped")
            continue
        if job is not None:
            jobs[job.job_id] = job
    out.jobs = list(jobs.values())
    return out


def _parsable_job(cell: Callable[[str], str], tz: ZoneInfo, jobs: dict[str, Job]) -> Job | None:
    """The job of one --parsable2 line, or None for a step (counted on its job); a
    ValueError says which cell cannot be read."""
    job_id = cell("job_id")
    base, _, step = job_id.partition(".")
    start = _parse_time(cell("start"), tz)
    end = _parse_time(cell("end"), tz)
    if step:
        parent = jobs.get(base)
        if parent is not None:
            parent.steps += 1
            if not parent.nodes and cell("nodes"):
                parent.nodes = expand_hostlist(cell("nodes"))
        return None
    state = cell("state").split(" ")[0] or None
    job = Job(
        job_id=base,
        name=cell("name") or None,
        user=cell("user") or None,
        account=cell("account") or None,
        partition=cell("partition") or None,
        qos=cell("qos") or None,
        cluster=cell("cluster") or None,
        state=state,
        nodes=expand_hostlist(cell("nodes")) if cell("nodes") != "None assigned" else [],
        start_ms=start,
        end_ms=None if state in ("RUNNING", "PENDING") else end,
    )
    _apply_tres(job, cell("tres"))
    if job.cpus is None and cell("cpus").isdigit():
        job.cpus = float(cell("cpus"))
    return job


def _parse_time(text: str, tz: ZoneInfo) -> int | None:
    if text in ("", "Unknown", "None", "N/A"):
        return None
    try:
        return to_ms(parse_time(text, tz=tz))
    except ValueError as error:
        raise ValueError(f"time {text!r} is not ISO 8601") from error


def _apply_tres(job: Job, tres: str) -> None:
    """`billing=8,cpu=8,gres/gpu:a100=2,gres/gpu=2,mem=64G,node=1`"""
    for part in filter(None, tres.split(",")):
        key, _, value = part.partition("=")
        if key.startswith("gres/gpu"):
            if not value.strip().isdigit():
                raise ValueError(f"AllocTRES {part!r}: the GPU count is not a whole number")
            count = int(value)
            if ":" in key:
                job.gpu_type = key.split(":", 1)[1]
                job.gpus = job.gpus or count
            else:
                job.gpus = count
        elif key == "cpu":
            if not re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
                raise ValueError(f"AllocTRES {part!r}: the CPU count is not a number")
            job.cpus = float(value)
        elif key == "mem":
            m = re.fullmatch(r"([\d.]+)([KMGTP]?)", value)
            if m:
                job.mem_gib = float(m.group(1)) * _MEM.get(m.group(2) or "M", 1 / 1024)


# -- hostlists ---------------------------------------------------------------------------------
def expand_hostlist(text: str) -> list[str]:
    """`gpu[01-03,07],login1` -> gpu01 gpu02 gpu03 gpu07 login1 (zero padding kept)."""
    out: list[str] = []
    for item in _split_top(text.strip()):
        out += _expand_item(item)
    return out


def _split_top(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            if cur:
                items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        items.append(cur)
    return items


def _expand_item(item: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", item)
    if m is None:
        return [item]
    head, tail = item[: m.start()], item[m.end() :]
    names = []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or not (hi.isdigit() or not hi):
            raise ValueError(f"hostlist {item!r}: {part!r} is not a number or a range")
        if hi and int(hi) - int(lo) > MAX_HOSTS:
            raise ValueError(f"hostlist {item!r}: a range of more than {MAX_HOSTS:,} hosts")
        if hi:
            width = len(lo)
            names += [f"{head}{n:0{width}d}" for n in range(int(lo), int(hi) + 1)]
        else:
            names.append(f"{head}{lo}")
    return [x for name in names for x in _expand_item(name + tail)]
