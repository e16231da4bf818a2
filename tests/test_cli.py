"""The command line: demo, ingest, cost in every format, and errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import H100

WINDOW = "2026-11-23T10:00:00Z,2026-11-23T11:00:00Z"


@pytest.fixture
def store(cli: Any, tmp_path: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text('prices:\n  gpu_models:\n    "NVIDIA H100 80GB HBM3": 4.00\n')
    out = cli(
        "--db",
        "s.duckdb",
        "--config",
        str(cfg),
        "ingest",
        "nvidia-smi",
        str(H100),
        "--host",
        "lab",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "loaded, 451 rows" in out.stdout
    return tmp_path


def test_ingest_twice_says_nothing_new(cli: Any, store: Path) -> None:
    out = cli("--db", "s.duckdb", "ingest", "nvidia-smi", str(H100), "--host", "lab", cwd=store)
    assert out.returncode == 0 and "unchanged, nothing new" in out.stdout


def test_cost_json_and_csv(cli: Any, store: Path) -> None:
    out = cli(
        "--db",
        "s.duckdb",
        "--config",
        "c.yaml",
        "cost",
        "--by",
        "team,gpu-model",
        "--window",
        WINDOW,
        "--format",
        "json",
        cwd=store,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["currency"] == "USD" and doc["by"] == ["team", "gpu_model"]
    assert sum(r["total_cost"] for r in doc["rows"]) == pytest.approx(doc["asset_cost"], abs=1e-5)
    # one H100 at $4/h for ~391 s
    assert doc["asset_cost"] == pytest.approx(4 * 390.9 / 3600, rel=0.01)
    csv_out = cli(
        "--db",
        "s.duckdb",
        "--config",
        "c.yaml",
        "cost",
        "--window",
        WINDOW,
        "--format",
        "csv",
        cwd=store,
    )
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("start,end,team,gpu_hours,gpu_cost")
    assert len(lines) == 3  # __unallocated__ (no owners) and __idle__


def test_table_lists_unpriced_with_the_config_line(cli: Any, store: Path) -> None:
    out = cli("--db", "s.duckdb", "cost", "--window", WINDOW, cwd=store)
    assert out.returncode == 0, out.stderr
    assert "__unpriced__" in out.stdout
    assert 'prices: {gpu_models: {"NVIDIA H100 80GB HBM3": <USD per GPU-hour>}}' in out.stdout


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["cost", "--window", "yesterday"], "--window: cannot read 'yesterday'", 2),
        (["cost", "--by", "colour"], "cannot group by 'colour'", 2),
        (["cost", "--step", "fortnight"], "cannot read 'fortnight' as a duration", 2),
        (["ingest", "nvidia-smi", "/no/such/dir"], "/no/such/dir: no such file", 3),
    ],
)
def test_errors_are_clear(cli: Any, store: Path, args: list[str], message: str, code: int) -> None:
    out = cli("--db", "s.duckdb", *args, cwd=store)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_store(cli: Any, tmp_path: Path) -> None:
    out = cli("--db", "empty.duckdb", "cost", cwd=tmp_path)
    assert out.returncode == 2
    assert "holds no GPU samples yet" in out.stderr and "aifinops demo" in out.stderr
    assert not (tmp_path / "empty.duckdb").exists()  # a read leaves no store behind


def test_demo(cli: Any, tmp_path: Path) -> None:
    out = cli("--db", "demo.duckdb", "demo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for part in (
        "GPU cost by team",
        "GPU cost by model",
        "Idle and waste",
        "__idle__",
        "__unallocated__",
        "__shared__",
        "__unpriced__",
        "research",
        "gpt2-medium",
        'gpu_models: {"NVIDIA L40S"',  # the on-prem L40S server nobody priced
    ):
        assert part in text, part
    # the demo store answers follow-up queries with the config it wrote
    again = cli(
        "--db",
        "demo.duckdb",
        "--config",
        "demo.yaml",
        "cost",
        "--by",
        "node",
        "--format",
        "json",
        cwd=tmp_path,
    )
    doc = json.loads(again.stdout)
    nodes = {r["key"]["node"] for r in doc["rows"]}
    assert {"h100-lab-01", "onprem-dgx-1", "aws-p4d-1", "gcp-a2-mig"} <= nodes
    assert sum(r["total_cost"] for r in doc["rows"]) == pytest.approx(doc["asset_cost"], abs=1e-4)


@pytest.mark.parametrize(
    "args",
    [
        ["prices", "show", "--gpu", "H100", "--format", "json"],
        ["prices", "compare", "--gpu", "A100"],
        ["cost", "--window", WINDOW, "--format", "csv"],
        ["cost", "--window", "yesterday"],  # an error: the service is closed all the same
    ],
)
def test_a_command_opens_one_service_and_closes_it(
    store: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from aifinops.cli.main import app
    from aifinops.service import Service

    entered: list[Service] = []
    closed: list[Service] = []
    enter, close = Service.__enter__, Service.close
    monkeypatch.setattr(Service, "__enter__", lambda self: entered.append(self) or enter(self))
    monkeypatch.setattr(Service, "close", lambda self: closed.append(self) or close(self))
    CliRunner().invoke(app, ["--db", str(store / "s.duckdb"), *args])
    assert len(entered) == 1 and entered[0] in closed


def test_every_format_has_one_renderer() -> None:
    from aifinops.cli import render
    from aifinops.cli.main import Format

    assert {f.value for f in Format} == set(render.RENDERERS)
