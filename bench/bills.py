"""Bill conversion benchmark: the real AWS CUR sample, repeated to a million lines, converted
by us and by the FinOps Foundation's focus-converter, in the same run.

The sample (`focus_converters-tests/aws`, 1,281 lines x 94 columns) is written COPIES times
with each copy's `identity/LineItemId` suffixed, so no line repeats. Two comparisons, each
printed as what it is:
- whole commands, as a user runs them, paired and interleaved, the same number of runs
  each: `aifinops ingest cur FILE` into a new store (read and convert into a stage in the
  store's DuckDB, check the delivery, write) against
  `../shared/tools/focus-convert --provider aws-cur` (read, convert, write FOCUS Parquet);
- in process, beside it: our reader `sources.bills.engine.read_bill` stopping at FOCUS-shaped
  Arrow batches in memory, and a bare DuckDB scan with the cost cast to DECIMAL (the
  floor), best of REPEAT.
Each side's CPU time over its wall time says how many cores it used; peak memory is each
process's own. Every BilledCost total is checked against the raw sample's (Decimal, times
COPIES).

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
    elif what == "cmd-ours":  # the whole command a user runs, into a new store
        db = workdir / "bench-ingest.duckdb"
        for leftover in (db, Path(f"{db}.wal")):
            leftover.unlink(missing_ok=True)
        subprocess.run(
            [sys.executable, "-m", "aifinops", "--db", str(db), "ingest", "cur", str(path)],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        seconds = time.perf_counter() - began
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        rows, total = con.execute("SELECT count(*), sum(billed_cost) FROM cost_lines").fetchone()
        con.close()
        return {"s": seconds, "rows": rows, "total": str(total), **_children()}
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
        return {"s": seconds, "rows": rows, "total": str(total), **_children()}
    seconds = time.perf_counter() - began
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {"s": seconds, "rows": rows, "total": str(total), "peak_mb": use.ru_maxrss / 1024,
            "cpu_s": use.ru_utime + use.ru_stime}  # fmt: skip


def _children() -> dict[str, float]:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"peak_mb": use.ru_maxrss / 1024, "cpu_s": use.ru_utime + use.ru_stime}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=781)
    ap.add_argument("--workdir", help="keep the big file here (default: a temporary folder)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours and the floor (best)")
    ap.add_argument(
        "--peer-repeat", type=int, default=3, help="runs of each whole command (paired)"
    )
    ap.add_argument(
        "--measure", choices=["build", "floor", "ours", "cmd-ours", "peer"], help=argparse.SUPPRESS
    )
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

        def run(what: str) -> dict[str, Any]:
            proc = subprocess.run(
                [sys.executable, __file__, "--measure", what, "--path", str(path),
                 "--workdir", str(workdir)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return dict(json.loads(proc.stdout.strip().splitlines()[-1]))

        # whole commands, paired and interleaved: ours, peer, ours, peer...
        cmds: dict[str, list[dict[str, Any]]] = {"cmd-ours": [], "peer": []}
        for _ in range(max(1, args.peer_repeat)):
            for what in cmds:
                cmds[what].append(run(what))
        inproc: dict[str, list[dict[str, Any]]] = {"floor": [], "ours": []}
        for _ in range(max(1, args.repeat)):
            for what in inproc:
                inproc[what].append(run(what))
        names = {
            "cmd-ours": "aifinops ingest cur (new store)",
            "peer": "focus-converter 1.0.0 (aws-cur)",
            "floor": "DuckDB scan, cost as DECIMAL (floor)",
            "ours": "read_bill to Arrow batches in memory",
        }
        n = max(1, args.peer_repeat)
        print(f"whole commands: {n} run(s) each, paired and interleaved; {os.cpu_count()} CPUs")
        header = f"{'':40s} {'median':>8s} {'best':>8s} {'cores':>6s} {'peak MB':>8s}"
        print(header + "  lines, BilledCost total")
        med: dict[str, float] = {}
        for group in (cmds, inproc):
            for what, got in group.items():
                walls = sorted(r["s"] for r in got)
                med[what] = walls[len(walls) // 2]
                cores = sum(r["cpu_s"] for r in got) / sum(r["s"] for r in got)
                last = got[-1]
                print(f"{names[what]:40s} {med[what]:7.2f}s {walls[0]:7.2f}s {cores:6.1f} "
                      f"{max(r['peak_mb'] for r in got):8.0f}  {last['rows']:,}, "
                      f"{last['total']}")  # fmt: skip
            if group is cmds:
                print(f"in process (not what a user runs), {args.repeat} run(s) each:")
        ours, peer, cmd = inproc["ours"][-1], cmds["peer"][-1], cmds["cmd-ours"][-1]
        same = (
            Decimal(str(ours["total"])) == expected
            and Decimal(str(cmd["total"])) == expected
            and abs(float(peer["total"]) - float(expected)) < 1e-6
            and ours["rows"] == peer["rows"] == cmd["rows"] == len(raw) * args.copies
        )
        print(
            f"whole commands, focus-converter / aifinops ingest (medians): "
            f"{med['peer'] / med['cmd-ours']:.1f}x; in process, read_bill / floor: "
            f"{med['ours'] / med['floor']:.2f}x; same lines and total: {'yes' if same else 'NO'}"
        )
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
