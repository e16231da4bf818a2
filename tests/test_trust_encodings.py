"""Issue 12, item 11: a bill or a config in another encoding is read as written, or refused
by line with the encoding named; no line and none of its money goes missing quietly."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest

from aifinops.config import load_settings
from aifinops.errors import InputError
from aifinops.sources.bills import diagnose
from aifinops.sources.bills.engine import BillRead, formats, read_bill
from tests.conftest import shared_data

GERMAN = "billing/opencost-azure-export/headersets/German.csv"
CUR = "billing/focus_converters-tests/aws/sample-anonymous-aws-export-dataset.csv"


def _cost_lines(path: Path, kind: str) -> tuple[list[dict[str, object]], BillRead]:
    read = BillRead()
    rows = [r for t in read_bill(path, formats()[kind], read=read) for r in t.to_pylist()]
    return rows, read


def _german_rows() -> tuple[str, dict[str, str]]:
    """The German Azure export's text and its one line, by the bracketed English names."""
    text = shared_data(GERMAN).read_text(encoding="utf-8")
    header, line = list(csv.reader(text.splitlines()))[:2]
    row = {}
    for name, value in zip(header, line, strict=True):
        row[name[name.rindex("(") + 1 : -1] if name.endswith(")") else name] = value
    return text, row


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig"])
def test_the_german_azure_export_in_other_encodings(tmp_path: Path, encoding: str) -> None:
    text, raw = _german_rows()
    assert "ß" in text  # `Maßeinheit (UnitOfMeasure)`: not ASCII, so the encoding matters
    path = tmp_path / f"azure-{encoding}.csv"
    path.write_bytes(text.encode(encoding))
    rows, read = _cost_lines(path, "azure")
    (line,) = rows
    # the cost as the file writes it, and the unit the ß-named column holds
    cost_column = next(k for k in ("PreTaxCost", "Cost", "CostInBillingCurrency") if k in raw)
    assert line["billed_cost"] == Decimal(raw[cost_column])
    # read through the header name with the ß, which only a right decoding finds
    assert line["consumed_unit"] == raw["UnitOfMeasure"] == "100 Hours"
    if encoding == "cp1252":
        assert any("read as Latin-1" in p for p in read.problems), read.problems


def test_a_utf8_bill_with_one_latin1_byte_is_refused_by_line(tmp_path: Path) -> None:
    """Real UTF-8 text (an `ä` in its two bytes) and, on line 925, a lone Latin-1 `ä`: two
    encodings in one file. Refused, naming the line and the byte, not read without it."""
    lines = shared_data(CUR).read_bytes().split(b"\n")
    assert b"Tax" in lines[5] and b"per" in lines[924]
    lines[5] = lines[5].replace(b"Tax", b"T\xc3\xa4x", 1)
    lines[924] = lines[924].replace(b"per", b"p\xe4r", 1)
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError) as caught:
        _cost_lines(path, "cur")
    assert caught.value.where == str(path)
    assert caught.value.message.startswith("line 925: not UTF-8 (byte 0xe4)")
    assert "UTF-8" in (caught.value.hint or "")


def test_a_bad_byte_past_the_sample_is_refused_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoding is told from the start of the file; a bad byte DuckDB meets later made
    it skip that line and its cost. Now the file is refused (a short sample stands in for a
    bill larger than the real one)."""
    monkeypatch.setattr(diagnose, "SAMPLE", 4096)
    lines = shared_data(CUR).read_bytes().split(b"\n")
    lines[924] = lines[924].replace(b"per", b"p\xe4r", 1)
    path = tmp_path / "late.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError) as caught:
        _cost_lines(path, "cur")
    assert caught.value.message.startswith("line 925: not UTF-8 (byte 0xe4)")


def test_a_latin1_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "aifinops.yaml"
    path.write_bytes(
        "attribution:\n  namespace_teams:\n    forschung: Müller-Team\n".encode("cp1252")
    )
    settings = load_settings(path, env={}, flags={})
    assert settings.attribution.namespace_teams == {"forschung": "Müller-Team"}
