"""A bill file's text encoding, and why DuckDB could not read one, in our words: the first
bad byte or broken CSV record, by line number, instead of the CSV sniffer's dump."""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

from aifinops.errors import InputError
from aifinops.sources.inputs import sniff_encoding

HINT = (
    "give the bill as the provider delivered it: CSV (UTF-8, UTF-16 or Latin-1), gzipped "
    "CSV, or Parquet; a file cut short must be downloaded again"
)


SAMPLE = 1 << 20  # the bytes looked at to tell the encoding


def bill_encoding(path: Path) -> str:
    """The encoding DuckDB is to read a CSV bill in: `utf-8` (a BOM is fine), `utf-16`
    (Windows tools; little-endian, by BOM or by its NULs), or `latin-1` where the start of
    the file is not UTF-8 (Latin-1 or Windows-1252 exports, as a German Azure portal writes
    them; the two differ only in rarely used characters, never in amounts). A UTF-8 start
    with a non-UTF-8 byte further on is refused when the scan meets it (`_rejects`)."""
    if path.name.lower().endswith(".parquet"):
        return "utf-8"
    try:
        with _binary(path) as fh:
            head = fh.read(SAMPLE)
    except (OSError, EOFError, gzip.BadGzipFile):
        return "utf-8"  # the read that follows says what is wrong
    found = sniff_encoding(head)
    if found == "utf-16-be" or head.startswith(b"\xfe\xff"):
        raise InputError(
            "a UTF-16 big-endian file, which cannot be read",
            where=str(path),
            hint="save it as UTF-8 (or UTF-16 little-endian)",
        )
    if found in ("utf-16", "utf-16-le"):
        return "utf-16"
    if b"\x00" in head[:4096]:
        return "utf-8"  # binary: the read fails and `unreadable` says where
    try:
        # a multi-byte character may be cut at the end of the sample: not final there
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SAMPLE)
    except UnicodeDecodeError as error:
        text = head.decode("utf-8", errors="replace")
        if any(c > "\x7f" and c != "\ufffd" for c in text):
            # real UTF-8 characters and bytes that are not: two encodings in one file
            raise not_utf8(path, head.count(b"\n", 0, error.start) + 1) from error
        return "latin-1"
    return "utf-8"


def not_utf8(path: Path, line: int) -> InputError:
    """A UTF-8 bill with a byte on `line` that is not UTF-8: refused, not read in part."""
    byte = ""
    with _binary(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number >= line:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    byte = f" (byte 0x{raw[error.start]:02x})"
                    line = number
                    break
    return InputError(
        f"line {line}: not UTF-8{byte}, though the file starts as UTF-8; nothing was loaded",
        where=str(path),
        hint="a file must be in one encoding throughout: convert it, e.g. "
        "`iconv -f WINDOWS-1252 -t UTF-8 in.csv > out.csv`",
    )


def unreadable(path: Path, error: Exception, encoding: str = "utf-8") -> InputError:
    """The InputError for a bill that DuckDB failed on: what is wrong and on which line."""
    found = None if path.name.lower().endswith(".parquet") else find_problem(path, encoding)
    if found is None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        found = f"cannot read the file: {first}"
    return InputError(found, where=str(path), hint=HINT)


@contextmanager
def _binary(path: Path) -> Iterator[IO[bytes]]:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            yield cast(IO[bytes], fh)
    else:
        with path.open("rb") as fh:
            yield fh


def find_problem(path: Path, encoding: str = "utf-8") -> str | None:
    """The first thing that makes the file unreadable as CSV, with its line; None if none
    is found."""
    try:
        with _binary(path) as fh:
            head = fh.read(4096)
            if encoding.startswith("utf-16") or sniff_encoding(head) in ("utf-16-le", "utf-16-be"):
                return None  # DuckDB's own error says enough for a UTF-16 file
            if b"\x00" in head:
                line = head.count(b"\n", 0, head.index(b"\x00")) + 1
                return f"not a CSV file: binary data (a NUL byte) at line {line}"
        if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
            with _binary(path) as fh:
                for number, raw in enumerate(fh, start=1):
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as error:
                        return (
                            f"line {number}: byte 0x{raw[error.start]:02x} is not UTF-8 "
                            "(binary data, or a text encoding other than UTF-8 part-way?)"
                        )
        return _broken_record(path, "latin-1" if encoding.startswith("latin") else "utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        return f"cannot read the file: {error}"


def _broken_record(path: Path, encoding: str) -> str | None:
    """The first record that is not CSV, by the line where it starts."""
    with (
        _binary(path) as raw,
        io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as fh,
    ):
        reader = csv.reader(fh, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as error:
            if "end of data" in str(error) or reader.line_num > start:
                return (
                    f"line {start}: a quoted field opens here and is never closed "
                    "(the file was cut short?)"
                )
            return f"line {reader.line_num}: not CSV ({error})"
    return None


def lines_hashed(
    path: Path, hashes: set[str], columns: list[int], encoding: str
) -> Iterator[tuple[int, str]]:
    """(line number, line hash) of each CSV record whose hash is one of `hashes`: where the
    lines a scan skipped are (a scan does not count lines). The hash is the engine's
    `line_hash` made again: md5 of the fields at `columns` joined by chr(31), an absent
    field (empty, `NULL`, or past a short record's end) as chr(30)."""
    if path.name.lower().endswith(".parquet"):
        return
    text_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    with (
        _binary(path) as raw,
        io.TextIOWrapper(raw, encoding=text_encoding, errors="replace", newline="") as fh,
    ):
        reader = csv.reader(fh)
        next(reader, None)  # the header
        start = reader.line_num + 1
        for record in reader:
            fields = (record[i] if i < len(record) else "" for i in columns)
            key = "\x1f".join("\x1e" if f in ("", "NULL") else f for f in fields)
            digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()
            if digest in hashes:
                yield start, digest
            start = reader.line_num + 1
