"""Source benchmark: parsing a dcgm-exporter scrape of N GPUs, and a Prometheus pull of
N GPUs x D days at 1-minute steps from a real Prometheus (Debian's, filled by promtool).

Prints samples per second and the peak memory of each phase, each in a fresh process.

    python bench/sources.py --gpus 1000 --days 7
    python bench/sources.py --gpus 1000 --days 7 --skip-prometheus
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1_794_787_200  # 2026-11-16T00:00:00Z, seconds
COUNTERS = [  # (name, value for a GPU with load u in 0..1)
    ("DCGM_FI_DEV_SM_CLOCK", lambda u: 1410 if u else 210),
    ("DCGM_FI_DEV_MEM_CLOCK", lambda u: 1593),
    ("DCGM_FI_DEV_MEMORY_TEMP", lambda u: 40 + 30 * u),
    ("DCGM_FI_DEV_GPU_TEMP", lambda u: 35 + 40 * u),
    ("DCGM_FI_DEV_POWER_USAGE", lambda u: 60 + 300 * u),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", lambda u: 123456789),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", lambda u: 0),
    ("DCGM_FI_DEV_GPU_UTIL", lambda u: round(100 * u)),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", lambda u: round(40 * u)),
    ("DCGM_FI_DEV_ENC_UTIL", lambda u: 0),
    ("DCGM_FI_DEV_DEC_UTIL", lambda u: 0),
    ("DCGM_FI_DEV_XID_ERRORS", lambda u: 0),
    ("DCGM_FI_DEV_FB_FREE", lambda u: 81559 - 60000 * u),
    ("DCGM_FI_DEV_FB_USED", lambda u: 60000 * u),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", lambda u: 0),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", lambda u: 0),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", lambda u: u),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", lambda u: u / 2),
    ("DCGM_FI_PROF_DRAM_ACTIVE", lambda u: u / 3),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", lambda u: 1e6),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", lambda u: 1e6),
]


def gpu_labels(g: int, pod: bool = True) -> str:
    host, idx = f"node-{g // 8:04d}", g % 8
    lab = (
        f'gpu="{idx}",UUID="GPU-{g:08d}-0000-0000-0000-000000000000",pci_bus_id="00000000:{idx:02X}:00.0",'
        f'device="nvidia{idx}",modelName="NVIDIA H100 80GB HBM3",Hostname="{host}"'
    )
    if pod and g % 10:  # nine GPUs in ten are held by a pod
        lab += f',container="main",namespace="team-{g % 5}",pod="job-{g // 2}"'
    return lab


def scrape_text(gpus: int) -> str:
    out = []
    for name, value in COUNTERS:
        out.append(f"# HELP {name} {name}.")
        out.append(f"# TYPE {name} gauge")
        for g in range(gpus):
            u = (g * 37 % 100) / 100
            out.append(f"{name}{{{gpu_labels(g)}}} {value(u)}")
    return "\n".join(out) + "\n"


def measure_scrape(gpus: int, repeat: int) -> dict[str, float]:
    from aifinops.sources.telemetry.dcgm import read_scrapes, to_facts

    text = scrape_text(gpus)
    samples = gpus * len(COUNTERS)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        facts = to_facts(read_scrapes(text, "bench", T0 * 1000), 30_000)
        times.append(time.perf_counter() - t)
    assert facts.usage.num_rows == gpus
    best = min(times)
    return {
        "samples": samples,
        "best_s": best,
        "per_s": samples / best,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def write_openmetrics(path: Path, gpus: int, days: int) -> int:
    """DCGM_FI_PROF_GR_ENGINE_ACTIVE per GPU each minute; pods change every 6 hours."""
    steps = days * 1440
    n = 0
    with path.open("w") as fh:
        fh.write("# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n")
        for g in range(gpus):
            base = gpu_labels(g, pod=False)
            lines = []
            for m in range(steps):
                ts = T0 + 60 * m
                shift = m // 360
                if (g + shift) % 10:
                    lab = f'{base},namespace="team-{(g + shift) % 5}",pod="job-{g}-{shift}"'
                else:
                    lab = base
                u = ((g * 37 + m * 11) % 100) / 100
                lines.append(f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{lab}}} {u} {ts}\n")
            # OpenMetrics wants each series' samples together and in time order
            lines.sort(key=lambda line: line[: line.rindex("}")])
            fh.writelines(lines)
            n += len(lines)
        fh.write("# EOF\n")
    return n


def measure_pull(url: str, db: str, gpus: int, days: int) -> dict[str, float]:
    from aifinops.config import load_settings
    from aifinops.core.windows import from_ms
    from aifinops.service import Service

    svc = Service(load_settings(None, env={}, flags={"db": db}))
    window = f"{from_ms(T0 * 1000).isoformat()},{from_ms((T0 + days * 86400) * 1000).isoformat()}"
    t = time.perf_counter()
    result = svc.ingest_prometheus(url, window=window, step="1m", timeout=300)
    took = time.perf_counter() - t
    svc.close()
    return {
        "samples": result.rows,
        "best_s": took,
        "per_s": result.rows / took,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(*args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-prometheus", action="store_true")
    ap.add_argument("--measure", choices=["scrape", "pull"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure == "scrape":
        print(json.dumps(measure_scrape(args.gpus, args.repeat)))
        return
    if args.measure == "pull":
        print(json.dumps(measure_pull(args.url, args.db, args.gpus, args.days)))
        return

    s = _child("--measure", "scrape", "--gpus", str(args.gpus), "--repeat", str(args.repeat))
    print(
        f"dcgm-exporter scrape of {args.gpus} GPUs ({len(COUNTERS)} counters each, "
        f"{s['samples']:,.0f} samples): {s['best_s']:.3f} s best of {args.repeat} = "
        f"{s['per_s']:,.0f} samples/s, peak {s['peak_mb']:.0f} MB"
    )
    if args.skip_prometheus:
        return
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        raise SystemExit("prometheus/promtool not installed (scripts/test-services.sh)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import PrometheusServer  # the same real server the tests start

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        data = Path(tmp) / "data.om"
        n = write_openmetrics(data, args.gpus, args.days)
        written = time.perf_counter() - t
        t = time.perf_counter()
        server = PrometheusServer(Path(tmp) / "server", data)
        loaded = time.perf_counter() - t
        try:
            db = str(Path(tmp) / "b.duckdb")
            p = _child(
                "--measure", "pull", "--url", server.url, "--db", db,
                "--gpus", str(args.gpus), "--days", str(args.days),
            )  # fmt: skip
        finally:
            server.close()
    print(
        f"prometheus pull of {args.gpus} GPUs x {args.days} days at 1-minute steps "
        f"({n:,} samples; written in {written:.0f} s, TSDB built and served in {loaded:.0f} s): "
        f"{p['best_s']:.1f} s = {p['per_s']:,.0f} samples/s, peak {p['peak_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
