"""CSV text that a spreadsheet reads as data: plain numbers, and no text cell it would run.

Every CSV we write (the CLI's `--format csv`, `export chargeback`, `export focus`) goes
through `cell`. A label comes from whoever set it (a pod label, a bill's resource id): one
such as `=cmd|' /C calc'!A0` is a formula to Excel or LibreOffice. As OWASP recommends
(CSV injection), a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return is written with a single quote before it; numbers, and text that is a plain number
(`-1.50`), are written as they are, in plain decimals (never `5.862e-07` or `0E-12`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

from aifinops.core.money import plain

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def cell(value: Any) -> str:
    """One CSV cell: None empty, a number in plain decimals, text escaped where a
    spreadsheet would take it for a formula."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal):
        return plain(value)
    text = str(value)
    if text.startswith(FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """`rows` under `columns` (header first) as CSV, every cell through `cell`."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([cell(c) for c in columns])
    writer.writerows([cell(r.get(c)) for c in columns] for r in rows)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    write_csv(buf, columns, rows)
    return buf.getvalue()
