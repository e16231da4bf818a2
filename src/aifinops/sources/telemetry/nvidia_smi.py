"""Parse nvidia-smi logs exactly as the tool writes them.

Formats, recognised by content (not by file name):
  query-gpu      `nvidia-smi --query-gpu=timestamp,uuid,utilization.gpu,... --format=csv -l N`
  compute-apps   `nvidia-smi --query-compute-apps=timestamp,gpu_uuid,pid,... --format=csv -l N`
  pmon           `nvidia-smi pmon -o DT`  (per-process SM %, the evidence for shared GPUs)
  dmon           `nvidia-smi dmon -o DT`  (device SM %, used when no query-gpu log exists)
  query-xml      `nvidia-smi -q -x`       (inventory: model, UUID, index, MIG mode)
Columns are found by their header names, so a re-ordered query still parses. A line that
cannot be read (a truncated last line, say) is reported with its file and line number and
skipped; the rest of the file still loads.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from aifinops.core.windows import parse_time, to_ms
from aifinops.errors import InputError

KINDS = ("query-gpu", "compute-apps", "pmon", "dmon", "query-xml")


@dataclass
class DeviceSample:
    ts_ms: int
    gpu_uuid: str | None
    gpu_index: int | None
    util: float | None  # 0..1
    name: str | None = None
    memory_used_mib: float | None = None
    power_w: float | None = None


@dataclass
class ProcessSample:
    ts_ms: int
    gpu_uuid: str | None
    gpu_index: int | None
    pid: int
    sm: float | None = None  # percent, from pmon
    memory_mib: float | None = None


@dataclass
class GpuInfo:
    uuid: str
    index: int | None
    name: str | None
    memory_total_mib: float | None = None
    mig_mode: str | None = None


@dataclass
class ParsedLog:
    """Everything read from one host's nvidia-smi logs."""

    devices: list[DeviceSample] = field(default_factory=list)
    device_kind: str | None = None
    processes: list[ProcessSample] = field(default_factory=list)
    process_kind: str | None = None
    pmon: list[ProcessSample] = field(default_factory=list)
    gpus: list[GpuInfo] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> kind
    warnings: list[str] = field(default_factory=list)


def detect_kind(path: Path) -> str | None:
    """Which nvidia-smi output a file holds, from its first meaningful line."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            head = ""
            for line in fh:
                if line.strip():
                    head = line.strip()
                    break
            second = fh.readline().strip() if head.startswith("#") else ""
    except OSError as exc:
        raise InputError(f"cannot read file: {exc}", where=str(path)) from exc
    low = head.lower()
    if low.startswith("<?xml") or "<nvidia_smi_log" in low:
        return "query-xml"
    if low.startswith("#") and ("date" in low or "gpu" in low):
        cols = low.lstrip("#").split()
        if "pid" in cols:
            return "pmon"
        if "sm" in cols or "pwr" in cols:
            return "dmon"
        del second
        return None
    cols = [_base(c) for c in head.split(",")]
    if "pid" in cols and (
        "gpu_uuid" in cols
        or "gpu_bus_id" in cols
        or "used_gpu_memory" in cols
        or "process_name" in cols
    ):
        return "compute-apps"
    if "utilization.gpu" in cols or ("uuid" in cols and "timestamp" in cols):
        return "query-gpu"
    return None


def parse_dir(directory: Path, tz: str = "UTC") -> ParsedLog:
    """Read every nvidia-smi log in a directory (or one file); skip other files with a note."""
    paths = (
        sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else [directory]
    )
    if not paths:
        raise InputError("no files found", where=str(directory))
    log = ParsedLog()
    zone = _zone(tz)
    for path in paths:
        kind = detect_kind(path)
        if kind is None:
            if directory.is_dir():
                log.warnings.append(f"{path}: not nvidia-smi output; skipped")
                continue
            raise InputError(
                "this file does not look like nvidia-smi output",
                where=str(path),
                hint="expected --query-gpu/--query-compute-apps CSV, pmon/dmon -o DT, or -q -x",
            )
        log.files[str(path)] = kind
        if kind == "query-gpu":
            _merge_devices(log, parse_query_gpu(path, zone, log.warnings), kind, path)
        elif kind == "dmon":
            if log.device_kind == "query-gpu":
                continue  # query-gpu carries UUIDs and utilization.gpu: prefer it
            _merge_devices(log, parse_dmon(path, zone, log.warnings), kind, path)
        elif kind == "compute-apps":
            log.processes += parse_compute_apps(path, zone, log.warnings)
            log.process_kind = "compute-apps"
        elif kind == "pmon":
            log.pmon += parse_pmon(path, zone, log.warnings)
        else:
            log.gpus += parse_query_xml(path)
    if not log.devices:
        raise InputError(
            "no GPU samples found: a --query-gpu CSV or a dmon log is needed",
            where=str(directory),
            hint="log with: nvidia-smi --query-gpu=timestamp,index,uuid,name,utilization.gpu,"
            "memory.used,memory.total,power.draw --format=csv -l 1",
        )
    if not log.processes and log.pmon:
        # pmon alone also tells which processes were on which GPU
        log.processes = [p for p in log.pmon]
        log.process_kind = "pmon"
    _fill_uuids(log)
    return log


def _merge_devices(log: ParsedLog, samples: list[DeviceSample], kind: str, path: Path) -> None:
    if kind == "query-gpu" and log.device_kind == "dmon":
        log.devices = []
    log.devices += samples
    log.device_kind = kind


def _fill_uuids(log: ParsedLog) -> None:
    """dmon and pmon name GPUs by index; map indexes to UUIDs from the other files."""
    by_index: dict[int, str] = {}
    names: dict[str, str] = {}
    for info in log.gpus:
        if info.index is not None:
            by_index[info.index] = info.uuid
        if info.name:
            names[info.uuid] = info.name
    for d in log.devices:
        if d.gpu_uuid and d.gpu_index is not None:
            by_index.setdefault(d.gpu_index, d.gpu_uuid)
    for sample in [*log.devices, *log.processes, *log.pmon]:
        if sample.gpu_uuid is None and sample.gpu_index is not None:
            sample.gpu_uuid = by_index.get(sample.gpu_index, f"gpu{sample.gpu_index}")
    for d in log.devices:
        if d.name is None and d.gpu_uuid in names:
            d.name = names[d.gpu_uuid]
    index_of = {u: i for i, u in by_index.items()}
    for p in log.processes:
        if p.gpu_index is None and p.gpu_uuid in index_of:
            p.gpu_index = index_of[p.gpu_uuid]


# -- CSV (--query-gpu, --query-compute-apps) ---------------------------------------------


def _base(column: str) -> str:
    """'utilization.gpu [%]' -> 'utilization.gpu'."""
    return column.strip().split(" [")[0].split("[")[0].strip().lower()


def _number(value: str) -> float | None:
    text = value.strip()
    if not text or text.startswith("[") or text.upper() in {"N/A", "-"}:
        return None
    for unit in ("MiB", "MHz", "W", "%", "C", "GiB", "KiB", "B"):
        if text.endswith(unit):
            text = text[: -len(unit)].strip()
            break
    return float(text)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except Exception as exc:
        raise InputError(
            f"unknown time zone {tz!r}",
            where="--timezone",
            hint="use an IANA name such as UTC or Europe/Berlin",
        ) from exc


# the `timestamp` column of --query-* CSV (local time of the host that ran nvidia-smi)
_CSV_TIMES = (
    "%Y/%m/%d %H:%M:%S.%f",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%a %b %d %H:%M:%S %Y",
)
_DT_TIME = ("%Y%m%d %H:%M:%S",)  # the Date and Time columns of pmon/dmon -o DT


def _csv_time(text: str, zone: ZoneInfo) -> int:
    return to_ms(parse_time(text, tz=zone, formats=_CSV_TIMES))


def _read_csv(
    path: Path, required: tuple[str, ...], kind: str, warnings: list[str]
) -> list[tuple[int, dict[str, str]]]:
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.rstrip("\n").rstrip("\r")
            if not text.strip():
                continue
            cells = [c.strip() for c in text.split(",")]
            names = [_base(c) for c in cells]
            if header is None or (names and names[0] == header[0] and set(names) == set(header)):
                # first line, or the header again after a restart of nvidia-smi -l
                missing = [r for r in required if r not in names]
                if missing:
                    raise InputError(
                        f"the {kind} header lacks {', '.join(missing)}",
                        where=f"{path}:{lineno}",
                        hint="add them to the --query list; columns may be in any order",
                    )
                header = names
                continue
            if len(cells) != len(header):
                warnings.append(
                    f"{path}:{lineno}: expected {len(header)} fields, found {len(cells)} "
                    "(truncated or malformed line); skipped"
                )
                continue
            rows.append((lineno, dict(zip(header, cells, strict=True))))
    if header is None:
        raise InputError("empty file", where=str(path))
    return rows


def parse_query_gpu(path: Path, zone: ZoneInfo, warnings: list[str]) -> list[DeviceSample]:
    rows = _read_csv(path, ("timestamp", "utilization.gpu"), "query-gpu", warnings)
    out = []
    for lineno, row in rows:
        try:
            uuid = row.get("uuid") or None
            index = row.get("index")
            if uuid is None and index is None:
                raise ValueError("neither uuid nor index")
            util = _number(row["utilization.gpu"])
            out.append(
                DeviceSample(
                    ts_ms=_csv_time(row["timestamp"], zone),
                    gpu_uuid=uuid,
                    gpu_index=int(index) if index not in (None, "") else None,
                    util=None if util is None else util / 100.0,
                    name=row.get("name") or None,
                    memory_used_mib=_number(row.get("memory.used", "")),
                    power_w=_number(row.get("power.draw", "")),
                )
            )
        except (ValueError, KeyError) as exc:
            warnings.append(f"{path}:{lineno}: {exc}; skipped")
    return out


def parse_compute_apps(path: Path, zone: ZoneInfo, warnings: list[str]) -> list[ProcessSample]:
    rows = _read_csv(path, ("timestamp", "pid"), "compute-apps", warnings)
    out = []
    for lineno, row in rows:
        try:
            uuid = row.get("gpu_uuid") or None
            if uuid is None:
                raise ValueError("no gpu_uuid")
            out.append(
                ProcessSample(
                    ts_ms=_csv_time(row["timestamp"], zone),
                    gpu_uuid=uuid,
                    gpu_index=None,
                    pid=int(row["pid"]),
                    memory_mib=_number(row.get("used_gpu_memory", "")),
                )
            )
        except (ValueError, KeyError) as exc:
            warnings.append(f"{path}:{lineno}: {exc}; skipped")
    return out


# -- pmon / dmon (-o DT) -----------------------------------------------------------------


def _read_table(path: Path, kind: str, warnings: list[str]) -> list[tuple[int, dict[str, str]]]:
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            if text.startswith("#"):
                cols = text.lstrip("#").split()
                if cols and cols[0].lower() in {"date", "gpu"} and header is None:
                    header = [c.lower() for c in cols]
                continue  # the units line, or the header repeated every screenful
            if header is None:
                raise InputError(
                    f"{kind} log has no '#' header line",
                    where=f"{path}:{lineno}",
                    hint=f"run nvidia-smi {kind} with -o DT and keep its header",
                )
            cells = text.split()
            if kind == "pmon" and len(cells) > len(header):
                # the command name may contain spaces
                cells = [*cells[: len(header) - 1], " ".join(cells[len(header) - 1 :])]
            if len(cells) < len(header) - (1 if kind == "pmon" else 0):
                warnings.append(
                    f"{path}:{lineno}: expected {len(header)} fields, "
                    f"found {len(cells)} (truncated line); skipped"
                )
                continue
            rows.append((lineno, dict(zip(header, cells, strict=False))))
    if header is None:
        raise InputError(f"empty {kind} log", where=str(path))
    if "date" not in header or "time" not in header:
        raise InputError(
            f"{kind} log has no Date/Time columns",
            where=str(path),
            hint=f"run nvidia-smi {kind} -o DT so every line carries its time",
        )
    return rows


def _dt_time(date: str, time: str, zone: ZoneInfo) -> int:
    return to_ms(parse_time(f"{date} {time}", tz=zone, formats=_DT_TIME))


def _dash(value: str | None) -> float | None:
    if value is None or value.strip() in {"-", "", "N/A"}:
        return None
    return float(value)


def parse_pmon(path: Path, zone: ZoneInfo, warnings: list[str]) -> list[ProcessSample]:
    out = []
    for lineno, row in _read_table(path, "pmon", warnings):
        try:
            if row.get("pid", "-") == "-":
                continue  # no process on this GPU at this time
            out.append(
                ProcessSample(
                    ts_ms=_dt_time(row["date"], row["time"], zone),
                    gpu_uuid=None,
                    gpu_index=int(row["gpu"]),
                    pid=int(row["pid"]),
                    sm=_dash(row.get("sm")),
                    memory_mib=_dash(row.get("fb")),
                )
            )
        except (ValueError, KeyError) as exc:
            warnings.append(f"{path}:{lineno}: {exc}; skipped")
    return out


def parse_dmon(path: Path, zone: ZoneInfo, warnings: list[str]) -> list[DeviceSample]:
    out = []
    for lineno, row in _read_table(path, "dmon", warnings):
        try:
            sm = _dash(row.get("sm"))
            out.append(
                DeviceSample(
                    ts_ms=_dt_time(row["date"], row["time"], zone),
                    gpu_uuid=None,
                    gpu_index=int(row["gpu"]),
                    util=None if sm is None else sm / 100.0,
                    memory_used_mib=_dash(row.get("fb")),
                    power_w=_dash(row.get("pwr")),
                )
            )
        except (ValueError, KeyError) as exc:
            warnings.append(f"{path}:{lineno}: {exc}; skipped")
    return out


# -- nvidia-smi -q -x ------------------------------------------------------------------


def parse_query_xml(path: Path) -> list[GpuInfo]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(
            f"not well-formed XML ({exc})",
            where=str(path),
            hint="the file may be cut short; capture nvidia-smi -q -x again",
        ) from exc
    if root.tag != "nvidia_smi_log":
        raise InputError(f"XML root is <{root.tag}>, not <nvidia_smi_log>", where=str(path))
    out = []
    for gpu in root.findall("gpu"):
        uuid = (gpu.findtext("uuid") or "").strip()
        if not uuid:
            continue
        minor = (gpu.findtext("minor_number") or "").strip()
        total = gpu.findtext("fb_memory_usage/total")
        out.append(
            GpuInfo(
                uuid=uuid,
                index=int(minor) if minor.isdigit() else None,
                name=(gpu.findtext("product_name") or "").strip() or None,
                memory_total_mib=_number(total) if total else None,
                mig_mode=(gpu.findtext("mig_mode/current_mig") or "").strip() or None,
            )
        )
    return out
