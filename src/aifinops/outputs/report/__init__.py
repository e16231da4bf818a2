"""The report for finance in four formats, one renderer each, registered by name: `html`
(Jinja2, charts inline as data: URIs), `pdf` (that same HTML through WeasyPrint, nothing
fetched), `md` (Jinja2, charts as PNG files beside it) and `csv` (one flat table). The
data come from the service (`Service.report`); nothing here reads the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aifinops.errors import UsageError, cannot_write

# a renderer: the report's data and its path -> {file name: bytes} (the report first)
Renderer = Callable[[dict[str, Any], Path], dict[Path, bytes]]
FORMATS: dict[str, Renderer] = {}
SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".md": "md", ".markdown": "md",
            ".csv": "csv"}  # fmt: skip


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        FORMATS[name] = fn
        return fn

    return register


def report_format(path: Path, fmt: str | None = None) -> str:
    """The format asked for (`fmt`), else the one `path`'s suffix names; either unknown is
    a usage error naming it."""
    from aifinops.outputs.report import render  # noqa: F401  (registers the renderers)

    if fmt is not None:
        if fmt.lower().lstrip(".") not in FORMATS:
            raise UsageError(f"unknown report format {fmt!r}", where="--format",
                             hint=", ".join(FORMATS))  # fmt: skip
        return fmt.lower().lstrip(".")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        named = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise UsageError(f"cannot tell the report's format from {path.name!r}: {named}",
                         where="--output",
                         hint="name it .html, .pdf, .md or .csv, or give --format "
                         "html|pdf|md|csv")  # fmt: skip
    return SUFFIXES[suffix]


def write_report(data: dict[str, Any], path: Path, fmt: str) -> dict[str, Any]:
    """Render the report as `fmt` and write it to `path` (a Markdown report's charts beside
    it); where it went, its size and the other files written."""
    files = FORMATS[report_format(path, fmt)](data, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            name.write_bytes(content)
    except OSError as error:
        raise cannot_write(path, error) from error
    return {"path": str(path), "format": fmt, "bytes": len(files[path]),
            "files": [str(p) for p in files if p != path]}  # fmt: skip
