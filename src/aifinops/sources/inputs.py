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


def unreadable(path: Path, error: OSError) -> InputError:
    """The one error for an input file that cannot be opened: what, where, and a hint."""
    if isinstance(error, FileNotFoundError):
        return InputError("no such file", where=str(path), hint="check the path and its spelling")
    if isinstance(error, IsADirectoryError):
        return InputError(
            "a directory, not a file", where=str(path), hint="give the files in it, e.g. DIR/*"
        )
    if isinstance(error, PermissionError):
        return InputError(
            "no permission to read it", where=str(path), hint="check the file's permissions"
        )
    return InputError(f"cannot read it: {error.strerror or error}", where=str(path))


def read_input(path: Path) -> bytes:
    """An input file's bytes, or an InputError naming it (missing, a directory, unreadable)."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(path, error) from error


def file_digest(paths: Sequence[Path], extra: str = "") -> str:
    """A content key of input files (names and bytes) and the options that change their
    meaning: the same input twice has the same key. A file that cannot be read is an
    InputError naming it (every file source keys its input here first)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except OSError as error:
            raise unreadable(path, error) from error
    h.update(extra.encode())
    return h.hexdigest()


# byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def sniff_encoding(head: bytes) -> str | None:
    """The encoding of a text file from its first bytes: a byte-order mark, or UTF-16
    without one (a NUL in every other byte of ASCII text). None: no mark (UTF-8 or a
    single-byte code page; decoding tells which)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    sample = head[:200]
    if len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4 and 0 not in sample[0::2]:
        return "utf-16-le"
    if len(sample) >= 4 and sample[0::2].count(0) > len(sample) // 4 and 0 not in sample[1::2]:
        return "utf-16-be"
    return None


def bad_byte(data: bytes, error: UnicodeDecodeError) -> str:
    """Where a decode failed, as `line N (byte 0xAB)`."""
    line = data.count(b"\n", 0, error.start) + 1
    return f"line {line} (byte 0x{data[error.start]:02x})"


def decode_text(data: bytes, where: str, *, what: str = "text") -> str:
    """Text of an input file: UTF-8 (with or without a BOM) or UTF-16 (with a BOM, or
    recognised by its NULs); anything else (binary, a legacy code page) is an InputError
    that names the file, the line of the first bad byte and the encodings tried."""
    encoding = sniff_encoding(data[:4096]) or "utf-8"
    if b"\x00" in data[:4096] and not encoding.startswith("utf-16"):
        raise InputError(
            f"not {what}: it holds NUL bytes (binary data?)",
            where=where,
            hint="give the text file itself (not a compressed or binary file)",
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise InputError(
            f"not {what} in {encoding.upper()}: a bad byte at {bad_byte(data, error)}",
            where=where,
            hint="save it as UTF-8 (or give the original, uncompressed file)",
        ) from error


def text_digest(prefix: str, text: str) -> str:
    return hashlib.sha256(prefix.encode() + text.encode()).hexdigest()


def read_scrape(src: str, at_ms: int | None, now_ms: int) -> tuple[str, int]:
    """A scrape's text (a file or a URL) and the instant it stands for: `at_ms` when given,
    else the file's modification time, else now for a URL."""
    from aifinops.sources.http import fetch_text, is_url

    if is_url(src):
        return fetch_text(src), at_ms if at_ms is not None else now_ms
    path = Path(src)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise unreadable(path, error) from error
    if at_ms is None:
        at_ms = int(datetime.fromtimestamp(path.stat().st_mtime, UTC).timestamp() * 1000)
    return text, at_ms
