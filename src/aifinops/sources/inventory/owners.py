"""The process-owner file for hosts without Kubernetes.

CSV with a header; columns `pid,workload,labels` and optionally `host,start,end`:

    pid,workload,labels,host,start,end
    732,llm-serve-7d9f4,"{""team"":""search"",""model"":""gpt2-medium""}",gpu-01,,
    817,research/pretrain-job-0,"{""team"":""research""}",,2026-11-23T10:36:31Z,

`labels` is a JSON object of strings. `workload` may be `namespace/name` to join a
Kubernetes pod of that name. `host` limits the row to one host; `start`/`end` (ISO 8601 or
epoch seconds, half-open) tell apart processes that reused a pid.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from aifinops.core.windows import parse_time, to_ms
from aifinops.errors import InputError

REQUIRED = ("pid", "workload")


@dataclass(frozen=True)
class Owner:
    pid: int
    workload: str
    labels: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def namespace(self) -> str | None:
        return self.workload.split("/", 1)[0] if "/" in self.workload else None


def read_owners(path: Path) -> list[Owner]:
    from aifinops.sources.inputs import decode_text, read_input

    # UTF-8 with or without a BOM, or UTF-16; anything else names its first bad byte
    text = decode_text(read_input(path), str(path), what="an owners CSV").removeprefix("\ufeff")
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise InputError(
            f"owners file lacks column(s) {', '.join(missing)}",
            where=f"{path}:1",
            hint="columns: pid,workload,labels[,host,start,end]",
        )
    owners = []
    for lineno, raw in enumerate(reader, start=2):
        row = {
            (k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None
        }
        where = f"{path}:{lineno}"
        if not any(row.values()):
            continue
        try:
            pid = int(row["pid"])
        except ValueError as exc:
            raise InputError(f"pid {row['pid']!r} is not a whole number", where=where) from exc
        if not row["workload"]:
            raise InputError("workload is empty", where=where)
        owners.append(
            Owner(
                pid=pid,
                workload=row["workload"],
                labels=_labels(row.get("labels", ""), where),
                host=row.get("host") or None,
                start_ms=_time(row.get("start", ""), where),
                end_ms=_time(row.get("end", ""), where),
            )
        )
    return owners


def _labels(text: str, where: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"labels are not valid JSON: {exc.msg}",
            where=where,
            hint='write labels as a JSON object, e.g. {"team":"research"}',
        ) from exc
    if not isinstance(value, dict):
        raise InputError("labels must be a JSON object", where=where)
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _time(text: str, where: str) -> int | None:
    if not text:
        return None
    try:
        return to_ms(parse_time(text, epoch=True))
    except ValueError as exc:
        raise InputError(
            f"cannot read time {text!r}",
            where=where,
            hint="use ISO 8601 (2026-11-23T10:36:31Z) or epoch seconds",
        ) from exc
