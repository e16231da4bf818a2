"""AWS CUR manifests: which files make up one delivery of a report.

Legacy CUR writes `<report>-Manifest.json` beside each delivery, with `assemblyId` and the
S3 `reportKeys` of its parts; CUR 2.0 writes `<export>-Manifest.json` (in `metadata/`)
with `executionId` and `dataFiles`. Either tells whether the files given are the whole
delivery (which then restates its billing period) or some of its parts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Delivery:
    manifest: Path
    assembly: str
    files: frozenset[str]  # the parts' file names
    complete: bool  # every part is among the files given
    note: str


def delivery_of(paths: Sequence[Path]) -> Delivery | None:
    """The delivery that the manifest beside the files (or in a `metadata/` folder next to
    them) says they belong to; None when no manifest names them all."""
    names = {p.name for p in paths}
    seen: set[Path] = set()
    for path in paths:
        folder = path.resolve().parent
        for candidate in [*folder.glob("*anifest.json"), *folder.glob("../metadata/*anifest.json")]:
            if candidate in seen:
                continue
            seen.add(candidate)
            found = _read(candidate)
            if found is None or not names <= found[1]:
                continue
            assembly, parts = found
            complete = parts <= names
            say = (
                f"manifest {candidate.name}: delivery {assembly}, "
                + (f"all {len(parts)} file(s) given: it restates its billing period"
                   if complete else f"{len(names)} of its {len(parts)} file(s) given")
            )  # fmt: skip
            return Delivery(candidate, assembly, frozenset(parts), complete, say)
    return None


def _read(path: Path) -> tuple[str, set[str]] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    keys = doc.get("reportKeys") or doc.get("dataFiles") or []
    if not isinstance(keys, list) or not keys:
        return None
    assembly = str(doc.get("assemblyId") or doc.get("executionId") or path.stem)
    return assembly, {PurePosixPath(str(k)).name for k in keys}
