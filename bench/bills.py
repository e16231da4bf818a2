"""Bill conversion benchmark: the real AWS CUR sample, repeated to a million lines, converted
by our reader and by the FinOps Foundation's focus-converter, in the same run.

The sample (`focus_converters-tests/aws`, 1,281 lines x 94 columns) is written COPIES times
with each copy's `identity/LineItemId` suffixed, so no line repeats. Then, each in its own
process: a bare DuckDB scan of the file with the cost cast to DECIMAL (the floor), our
`sources.bills.read_bill` (FOCUS-shaped Arrow batches, exact decimals), and
`../shared/tools/focus-convert --provider aws-cur` (FOCUS Parquet). Prints times, the
ratio, line counts, peak memory and the BilledCost total of each next to the total worked
out from the raw sample (Decimal, times COPIES).

    python bench/bills.py                 # 781 copies = 1,000,461 lines, ~815 MB
    python bench/bills.py --copies 50     # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

SAMPLE = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"


def shared(kind: str, relative: str) -> Path:
    env = os.environ.get(f"AIFINOPS_SHARED_{kind.upper()}", "")
    roots = [
        env,
        str(Path(__file__).resolve().parents[2] / "shared" / kind),
        f"/work/shared/{kind}",
    ]
    for root in filter(None, roots):
        if (Path(root) / relative).exists():
            return Path(root) / relative
    sys.exit(f"bench/bills.py: {kind}/{relative} not found under {roots}")


def build(sample: Path, out: Path, copies: int) -> dict[str, float]:
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect()
    scan = f"read_csv('{sample}', header = true, all_varchar = true)"
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]

    def col(n: str) -> str:
        q = '"' + n.replace('"', '""') + '"'
        return f"{q} || '-' || c.i AS {q}" if n == "identity/LineItemId" else q

    con.execute(
        f"COPY (SELECT {', '.join(col(n) for n in names)} FROM range({copies}) c(i), {scan} "
        f"ORDER BY c.i) TO '{out}' (HEADER, DELIMITER ',')"
    )
    return {"build_s": time.perf_counter() - began, "bytes": out.stat().st_size}


def measure(what: str, path: Path, workdir: Path) -> dict[str, object]:
    began = time.perf_counter()
    if what == "floor":
        from aifinops.sources.bills import engine as bills

        con = bills._connect()
        rows, total = con.execute(
            'SELECT count(*), sum(TRY_CAST("lineItem/UnblendedCost" AS DECIMAL(38, 12))) '
            f"FROM {bills._source(path)}"
        ).fetchone()
    elif what == "ours":
        import pyarrow.compute as pc

        from aifinops.sources.bills import engine as bills

        rows, total = 0, Decimal(0)
        read = bills.BillRead()
        for batch in bills.read_bill(path, bills.formats()["cur"], read=read):
            rows += batch.num_rows
            total += pc.sum(batch.column("billed_cost")).as_py() or 0
        assert read.skipped == 0, read.problems
    else:  # the peer, in its own process tree; its output read back afterwards
        out = workdir / "focus-converter-out"
        shutil.rmtree(out, ignore_errors=True)
        tool = shared("tools", "focus-convert")
        subprocess.run(
            [str(tool), "--provider", "aws-cur", "--data-path", str(path), "--data-format",
             "csv", "--export-path", str(out)],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        seconds = time.perf_counter() - began
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(sorted(out.glob("*.parquet")))
        rows, total = table.num_rows, pc.sum(table.column("BilledCost")).as_py()
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"s": seconds, "rows": rows, "total": str(total), "peak_mb": child}
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s": seconds, "rows": rows, "total": str(total), "peak_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=781)
    ap.add_argument("--workdir", help="keep the big file here (default: a temporary folder)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours and the floor (best)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="runs of focus-converter (best)")
    ap.add_argument("--measure", choices=["build", "floor", "ours", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure == "build":
        print(json.dumps(build(shared("data", SAMPLE), Path(args.path), args.copies)))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.path), Path(args.workdir))))
        return
    sample = shared("data", SAMPLE)
    with sample.open(newline="") as fh:
        raw = list(csv.DictReader(fh))
    # the expected total, from the raw file: what both converters must report
    expected = sum(Decimal(r["lineItem/UnblendedCost"] or 0) for r in raw) * args.copies
    tool = shared("tools", "focus-convert")
    # the peer installs itself on first use: not part of its time
    subprocess.run([str(tool), "--help"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"cur-x{args.copies}.csv"
        # every phase in its own process started from this small one: Linux keeps the peak
        # RSS across fork+exec, so a child of a big parent would report the parent's peak
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", "build", "--path", str(path),
             "--copies", str(args.copies)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        built = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"input: the real CUR sample ({len(raw):,} lines x 94 columns) x {args.copies} = "
            f"{len(raw) * args.copies:,} lines, {built['bytes'] / 1e6:,.0f} MB "
            f"(written in {built['build_s']:.1f} s); expected BilledCost total {expected}"
        )
        out: dict[str, dict[str, Any]] = {}
        runs = {"floor": args.repeat, "ours": args.repeat, "peer": args.peer_repeat}
        for what, times in runs.items():
            for _ in range(max(1, times)):
                proc = subprocess.run(
                    [sys.executable, __file__, "--measure", what, "--path", str(path),
                     "--workdir", str(workdir)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                if what not in out or got["s"] < out[what]["s"]:
                    out[what] = got
        names = {
            "floor": "DuckDB scan, cost as DECIMAL (floor)",
            "ours": "aifinops read_bill (cur)",
            "peer": "focus-converter 1.0.0 (aws-cur)",
        }
        print(f"best of {args.repeat} (ours, floor) and {args.peer_repeat} (focus-converter); "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'':40s} {'time':>8s} {'lines':>11s} {'peak MB':>8s}  BilledCost total")
        for what, r in out.items():
            print(f"{names[what]:40s} {r['s']:7.2f}s {r['rows']:>11,} {r['peak_mb']:8.0f}  "
                  f"{r['total']}")  # fmt: skip
        ours, peer = out["ours"], out["peer"]
        same = (
            Decimal(str(ours["total"])) == expected
            and abs(float(peer["total"]) - float(expected)) < 1e-6
            and ours["rows"] == peer["rows"] == len(raw) * args.copies
        )
        print(
            f"ratio focus-converter / aifinops: {peer['s'] / ours['s']:.1f}x (target >= 10x); "
            f"aifinops / floor: {ours['s'] / out['floor']['s']:.2f}x; "
            f"same lines and total: {'yes' if same else 'NO'}"
        )
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
