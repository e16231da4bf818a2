"""The chargeback table for finance as CSV text (`aifinops export chargeback`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def chargeback_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of a chargeback (groups, then the TOTAL row) as CSV text, header first."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
