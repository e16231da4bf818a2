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


def vllm_scrapes(path: Path) -> list[tuple[str, int, str]]:
    """What each model server of the capture would have said on vLLM's `/metrics`: (pod,
    when in ms, the scrape's text) when it started (its counters at zero) and when the
    capture ended, counting the requests its event log records and their tokens."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip()]  # fmt: skip
    end = max(e["ts"] for e in events if e.get("event") == "capture_end")
    requests: dict[str, list[dict[str, object]]] = {}
    for e in events:
        if e.get("event") == "request" and e.get("status") == "ok":
            requests.setdefault(str(e["pod"]), []).append(e)
    started = {e["pod"]: e["ts"] for e in events if e.get("event") == "worker_start"}
    out = []
    for pod, done in sorted(requests.items()):
        model = str(done[0]["model"])
        for when, served in ((started[pod], []), (end, done)):
            counts = {
                "vllm:request_success_total": len(served),
                "vllm:prompt_tokens_total": sum(int(str(r["prompt_tokens"])) for r in served),
                "vllm:generation_tokens_total": sum(
                    int(str(r["completion_tokens"])) for r in served
                ),
            }
            lines = []
            for name, value in counts.items():
                extra = ',finished_reason="stop"' if name == "vllm:request_success_total" else ""
                lines += [f"# TYPE {name} counter",
                          f'{name}{{model_name="{model}"{extra}}} {value}']  # fmt: skip
            out.append((pod, int(float(str(when)) * 1000), "\n".join(lines) + "\n"))
    return out
