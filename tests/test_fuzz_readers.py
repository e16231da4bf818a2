"""Every file reader fuzzed over a real file (issue 12): cut at a random byte, random bytes
spliced in, the whole file re-encoded. A read either succeeds or raises one of our errors,
never a traceback; a bill that loads stores exactly the lines it says it loaded, and their
money is the raw file's (worked out here with csv + Decimal, not through our reader). A
large CUR ingest killed mid-run and run again stores the file's total, once."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifinops.config import load_settings
from aifinops.errors import AifinopsError
from aifinops.service import Service
from tests.conftest import H100, shared_data

CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"
FOCUS = "billing/focus-1.0-sample/focus_sample.csv"
AZURE = "billing/opencost-azure-export/values/Template.csv"
OCI = "billing/focus_converters-tests/oci/reports_cost-csv_0000000030000269.csv"
NODES = "cluster-traces/v2023/node_yaml/openb_node_list_gpu_node.yaml"
DATA = Path(__file__).parent / "data"

FUZZ = settings(
    max_examples=int(os.environ.get("AIFINOPS_FUZZ_EXAMPLES", "6")),
    deadline=None,
    derandomize=True,  # the same examples each run: a failure here is a failure everywhere
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ENCODINGS = ("utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252")


# -- the mutations ------------------------------------------------------------------------
class Change(tuple[str, bytes, str | None]):
    """(what was done, the bytes, the encoding they are in where re-encoded); shown by what
    was done, not by its bytes."""

    def __repr__(self) -> str:
        return f"Change({self[0]!r}, {len(self[1])} bytes)"


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> Change:
    return Change(_mutated(draw, raw))


def _mutated(draw: st.DrawFn, raw: bytes) -> tuple[str, bytes, str | None]:
    how = draw(st.sampled_from(["cut", "cut-at-line", "splice", "re-encode"]))
    if how == "cut":
        at = draw(st.integers(0, len(raw)))
        return f"cut at byte {at}", raw[:at], None
    if how == "cut-at-line":
        ends = [i + 1 for i, b in enumerate(raw) if b == 0x0A]
        at = draw(st.sampled_from(ends)) if ends else len(raw)
        return f"cut after byte {at}", raw[:at], None
    if how == "splice":
        at = draw(st.integers(0, len(raw)))
        gone = draw(st.integers(0, 4))
        junk = draw(st.binary(min_size=1, max_size=8))
        return f"{junk!r} for {gone} byte(s) at {at}", raw[:at] + junk + raw[at + gone :], None
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        text = raw.decode("utf-8-sig").encode(encoding)
    except UnicodeEncodeError:  # not representable: the file as it is
        return "as it is", raw, None
    return f"re-encoded {encoding}", text, encoding


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@contextmanager
def fresh_service(tmp: Path, config: dict[str, Any] | None = None) -> Iterator[Service]:
    """A service on a new store (hypothesis runs many examples in one test's tmp_path)."""
    import uuid

    import yaml

    name = uuid.uuid4().hex
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config or {}))
    svc = Service(load_settings(cfg, env={}, flags={"db": str(tmp / f"{name}.duckdb")}))
    try:
        yield svc
    finally:
        svc.close()


def ours_or_nothing(call: Callable[[], Any], what: str) -> Any:
    """The call's value, or None where it raised one of our errors (with a where or a
    message a user can act on); anything else fails the test."""
    try:
        return call()
    except AifinopsError as error:
        assert error.message, what
        return None


# -- the raw files' money, read with csv + Decimal ----------------------------------------
def _cost(text: str | None) -> Decimal | None:
    if text is None or text.strip() in ("", "NULL"):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class Rule:
    """How a format's raw line gives its billed cost, and the fields it cannot do without."""

    def __init__(self, cost: tuple[str, ...], needs: tuple[str, ...]):
        self.cost, self.needs = cost, needs

    def billed(self, row: dict[str, str | None]) -> Decimal | None:
        for name in self.cost:
            value = _cost(row.get(name.lower()))
            if value is not None:
                return value
        return None

    def valid(self, row: dict[str, str | None]) -> bool:
        return self.billed(row) is not None and all(
            (row.get(n.lower()) or "").strip() not in ("", "NULL") for n in self.needs
        )


RULES = {
    "cur": Rule(
        ("lineItem/NetUnblendedCost", "lineItem/UnblendedCost"),
        ("lineItem/CurrencyCode", "lineItem/UsageStartDate"),
    ),
    "focus": Rule(("BilledCost",), ("BillingCurrency", "ChargePeriodStart")),
    "oci": Rule(("cost/myCost",), ("cost/currencyCode", "lineItem/intervalUsageStart")),
    "azure": Rule(("costinbillingcurrency",), ("UsageDateTime",)),
}


def records(data: bytes, encoding: str | None) -> list[tuple[str, ...]]:
    if encoding is None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    else:
        text = data.decode(encoding).removeprefix("\ufeff")
    return [tuple(r) for r in csv.reader(io.StringIO(text, newline=""))]


def check_bill(
    svc: Service, kind: str, path: Path, original: bytes, data: bytes, encoding: str | None,
    options: dict[str, Any],
) -> None:  # fmt: skip
    """A bill either is refused with our error or loads; loaded, the store holds exactly
    result.rows lines, every intact line of the raw file among them, and the money of
    those lines plus that of some of the damaged ones (each either loaded as written or
    skipped with a note)."""
    got = ours_or_nothing(lambda: svc.ingest_bills(kind, [path], options=options), kind)
    if got is None:
        return
    (result,) = got
    assert result.status == "loaded"
    count, total = svc.store.raw("SELECT count(*), sum(billed_cost) FROM cost_lines")[0]
    total = total or Decimal(0)
    assert count == result.rows, result.notes
    before = records(original, None)
    after = records(data, encoding)
    if not after or after[0] != before[0]:
        return  # the header itself was hit: which columns are which is the reader's guess
    rule, names = RULES[kind], [h.lower() for h in before[0]]
    pad = bool(options.get("pad_short_rows"))

    def row(rec: tuple[str, ...]) -> dict[str, str | None] | None:
        if pad and len(rec) < len(names):
            rec = rec + ("",) * (len(names) - len(rec))
        return dict(zip(names, rec, strict=True)) if len(rec) == len(names) else None

    known = set(before[1:])
    intact: dict[tuple[str, ...], Decimal] = {}
    damaged: dict[tuple[str, ...], Decimal] = {}
    lines = {rec for rec in after[1:] if any(f.strip() for f in rec)}
    for rec in lines:
        parsed = row(rec)
        if parsed is None or not rule.valid(parsed):
            if rec in known:
                raise AssertionError(f"an intact line not valid: {rec[:5]}")
            continue
        (intact if rec in known else damaged)[rec] = rule.billed(parsed) or Decimal(0)
    want_intact = sum(intact.values(), Decimal(0))
    if count < len(lines):
        assert result.notes, "lines went missing without a word"
    extra = count - len(intact)
    assert 0 <= extra <= len(damaged), (count, len(intact), len(damaged), result.notes)
    if len(damaged) <= 8:
        sums = {sum(c, Decimal(0)) for c in combinations(damaged.values(), extra)}
        # the store keeps 12 decimals: a file with more is right to within them
        slack = Decimal(len(lines)) * Decimal("1e-12")
        assert any(abs(total - want_intact - s) <= slack for s in sums), (
            total, want_intact, damaged, result.notes
        )  # fmt: skip


def bill_property(kind: str, relative: str, options: dict[str, Any] | None = None) -> Any:
    raw = shared_data(relative).read_bytes()

    @FUZZ
    @given(change=mutated(raw))
    def run(tmp_path: Path, change: tuple[str, bytes, str | None]) -> None:
        _, data, encoding = change
        path = write(tmp_path, Path(relative).name, data)
        with fresh_service(tmp_path) as svc:
            check_bill(svc, kind, path, raw, data, encoding, options or {})

    return run


def test_fuzz_cur(tmp_path: Path) -> None:
    bill_property("cur", CUR)(tmp_path)


def test_fuzz_focus(tmp_path: Path) -> None:
    bill_property("focus", FOCUS)(tmp_path)


def test_fuzz_azure(tmp_path: Path) -> None:
    bill_property("azure", AZURE, {"currency": "USD", "pad_short_rows": True})(tmp_path)


def test_fuzz_oci(tmp_path: Path) -> None:
    bill_property("oci", OCI)(tmp_path)


# -- the other readers: never a traceback -------------------------------------------------
def fuzz_file(raw: bytes, run_one: Callable[[bytes], Any]) -> Callable[[], None]:
    @FUZZ
    @given(change=mutated(raw))
    def run(change: tuple[str, bytes, str | None]) -> None:
        run_one(change[1])

    return run


SMI_FILES = (
    "nvidia_smi_query_gpu.csv",
    "nvidia_smi_compute_apps.csv",
    "nvidia_smi_dmon.txt",
    "nvidia_smi_pmon.txt",
    "nvidia_smi_q.xml",
)


@pytest.mark.parametrize("name", SMI_FILES)
def test_fuzz_nvidia_smi(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "capture"
    folder.mkdir()
    for other in SMI_FILES:
        (folder / other).write_bytes((H100 / other).read_bytes())

    def one(data: bytes) -> None:
        (folder / name).write_bytes(data)
        with fresh_service(tmp_path, {"prices": {"gpu_models": {"H100": 4.0}}}) as svc:
            ours_or_nothing(lambda: svc.ingest_nvidia_smi(folder, host="h100-a"), name)

    fuzz_file((H100 / name).read_bytes(), one)()


@pytest.mark.parametrize("name", ["sacct.json", "sacct-parsable2.txt"])
def test_fuzz_slurm(tmp_path: Path, name: str) -> None:
    def one(data: bytes) -> None:
        path = write(tmp_path, name, data)
        with fresh_service(tmp_path) as svc:
            ours_or_nothing(lambda: svc.ingest_slurm([path]), name)

    fuzz_file((DATA / "slurm" / name).read_bytes(), one)()


def test_fuzz_opencost(tmp_path: Path) -> None:
    def one(data: bytes) -> None:
        path = write(tmp_path, "allocation.json", data)
        with fresh_service(tmp_path) as svc:
            ours_or_nothing(lambda: svc.ingest_opencost([str(path)]), "opencost")

    fuzz_file((DATA / "opencost" / "allocation.json").read_bytes(), one)()


def test_fuzz_inference(tmp_path: Path) -> None:
    def one(data: bytes) -> None:
        path = write(tmp_path, "vllm_metrics.txt", data)
        with fresh_service(tmp_path) as svc:
            ours_or_nothing(
                lambda: svc.ingest_inference([str(path)], at="2026-11-23T10:00:00Z"), "vllm"
            )

    fuzz_file((DATA / "metrics" / "vllm_metrics.txt").read_bytes(), one)()


def _owners_file() -> bytes:
    """The capture's owners, from its ground truth: pid, pod, team, and when each ran."""
    events = [json.loads(x) for x in (H100 / "workload_events.jsonl").read_text().splitlines()]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["pid", "workload", "labels", "host", "start", "end"])
    for e in events:
        if "pid" in e and "pod" in e:
            labels = json.dumps({"team": e.get("team", "")})
            writer.writerow([e["pid"], f"lab/{e['pod']}", labels, "h100-a", e.get("ts", ""), ""])
    return out.getvalue().encode()


def test_fuzz_owners(tmp_path: Path) -> None:
    from aifinops.sources.inventory.owners import read_owners

    raw = _owners_file()
    assert raw.count(b"\n") > 1

    def one(data: bytes) -> None:
        path = write(tmp_path, "owners.csv", data)
        ours_or_nothing(lambda: read_owners(path), "owners")

    fuzz_file(raw, one)()


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_fuzz_kubernetes(tmp_path: Path, form: str) -> None:
    import yaml

    # the first 40 nodes of the real Node YAML (the whole file takes seconds to parse)
    text = shared_data(NODES).read_text()
    docs = text.split("\n---\n")[:40]
    raw = "\n---\n".join(docs).encode()
    if form == "json":
        items = [d for d in yaml.safe_load_all(raw) if d]
        raw = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=1).encode()

    def one(data: bytes) -> None:
        path = write(tmp_path, f"nodes.{form}", data)
        with fresh_service(tmp_path) as svc:
            ours_or_nothing(lambda: svc.ingest_kubernetes([path]), "kubernetes")

    fuzz_file(raw, one)()


# -- a large ingest killed and run again --------------------------------------------------
def test_killed_ingest_then_rerun_stores_the_file_once(tmp_path: Path) -> None:
    """`ingest cur BIG.csv` SIGKILLed part-way leaves nothing half-written: run again, the
    store holds every line of the file once, and the file's total (the raw sample's, times
    the copies, with Decimal)."""
    import duckdb

    sample = shared_data(CUR)
    copies = 100
    with sample.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    want = sum((_cost(r["lineItem/UnblendedCost"]) or Decimal(0) for r in rows), Decimal(0))
    big = tmp_path / "big.csv"
    con = duckdb.connect()
    scan = f"read_csv('{sample}', header = true, all_varchar = true)"
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]

    def col(n: str) -> str:
        q = '"' + n.replace('"', '""') + '"'
        return f"{q} || '-' || c.i AS {q}" if n == "identity/LineItemId" else q

    con.execute(
        f"COPY (SELECT {', '.join(col(n) for n in names)} FROM range({copies}) c(i), {scan} "
        f"ORDER BY c.i) TO '{big}' (HEADER, DELIMITER ',')"
    )
    con.close()
    db = tmp_path / "store.duckdb"
    command = [sys.executable, "-m", "aifinops", "--db", str(db), "ingest", "cur", str(big)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    # killed a moment after it opened the store: part-way through reading the bill (the
    # whole run takes seconds more)
    deadline = time.monotonic() + 60
    while not db.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL, "the ingest ended before it was killed"
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    count, total = con.execute("SELECT count(*), sum(billed_cost) FROM cost_lines").fetchone()
    con.close()
    assert count == len(rows) * copies
    assert total == want * copies


def test_mutations_are_real(tmp_path: Path) -> None:
    """The re-encodings give the original text back (the property's reading of them)."""
    raw = shared_data(AZURE).read_bytes()
    for encoding in ENCODINGS:
        assert codecs.decode(raw.decode("utf-8").encode(encoding), encoding).removeprefix(
            "\ufeff"
        ) == raw.decode("utf-8").removeprefix("\ufeff")
