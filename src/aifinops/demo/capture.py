"""The bundled real H100 capture and the owners its ground-truth events imply."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from aifinops.sources.inventory.owners import Owner

CAPTURE_HOST = "h100-lab-01"


def h100_capture_dir() -> Path:
    return Path(str(resources.files("aifinops.data").joinpath("h100-run-a")))


def owners_from_events(path: Path, namespace: str | None = None) -> list[Owner]:
    """One owner per `worker_start` event: pid, pod, team, and the model it loaded."""
    models: dict[int, str] = {}
    starts: list[dict[str, object]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("event") == "worker_start":
            starts.append(event)
        elif event.get("event") == "model_loaded":
            models[int(event["pid"])] = str(event["model"])
    owners = []
    for event in starts:
        pid = int(str(event["pid"]))
        labels = {"team": str(event["team"]), "workload-kind": str(event.get("kind", ""))}
        if pid in models:
            labels["model"] = models[pid]
        pod = str(event["pod"])
        owners.append(
            Owner(pid=pid, workload=f"{namespace}/{pod}" if namespace else pod, labels=labels)
        )
    return owners
