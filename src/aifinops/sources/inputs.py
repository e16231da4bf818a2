"""Small helpers every file reader shares."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aifinops.errors import InputError


def load_json(text: str, where: str) -> Any:
    """Decoded JSON, or an InputError naming the file and the line where it breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"not valid JSON (truncated?): {error.msg} at line {error.lineno}", where=where
        ) from error


def file_digest(paths: Sequence[Path], extra: str = "") -> str:
    """A content key of input files (names and bytes) and the options that change their
    meaning: the same input twice has the same key."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(extra.encode())
    return h.hexdigest()


def text_digest(prefix: str, text: str) -> str:
    return hashlib.sha256(prefix.encode() + text.encode()).hexdigest()


def read_scrape(src: str, at_ms: int | None, now_ms: int) -> tuple[str, int]:
    """A scrape's text (a file or a URL) and the instant it stands for: `at_ms` when given,
    else the file's modification time, else now for a URL."""
    from aifinops.sources.http import fetch_text, is_url

    if is_url(src):
        return fetch_text(src), at_ms if at_ms is not None else now_ms
    path = Path(src)
    if not path.is_file():
        raise InputError("no such file", where=src)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise InputError(f"cannot read it: {error.strerror}", where=src) from error
    if at_ms is None:
        at_ms = int(datetime.fromtimestamp(path.stat().st_mtime, UTC).timestamp() * 1000)
    return text, at_ms
