"""The Prometheus text exposition format (and OpenMetrics text), as exporters write it.

One parser for every scrape aifinops reads: dcgm-exporter, vLLM, SGLang, TGI, Triton,
KServe. A line that is not a sample (a truncated last line, a stray header) is reported with
its number and skipped; the samples around it still count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LINE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+(?:\.\d+)?))?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int | None
    line: int


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


def parse(text: str, where: str = "scrape") -> Exposition:
    """Parse exposition text. Problems are collected as `where:line: what`, never raised."""
    out = Exposition()
    seen: dict[tuple[str, tuple[tuple[str, str], ...], int | None], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        m = _LINE.match(line)
        if m is None:
            out.problems.append(
                f"{where}:{number}: not a metric sample (truncated?): {raw[:80]}; skipped"
            )
            continue
        name, label_text, value_text, ts_text = m.groups()
        labels = _labels(label_text) if label_text else {}
        if labels is None:
            out.problems.append(f"{where}:{number}: malformed labels: {raw[:80]}; skipped")
            continue
        try:
            value = float(value_text)
        except ValueError:
            out.problems.append(f"{where}:{number}: value {value_text!r} is not a number; skipped")
            continue
        ts_ms = None
        if ts_text is not None:
            # Prometheus text gives milliseconds; OpenMetrics gives seconds (with a dot)
            ts_ms = int(float(ts_text) * 1000) if "." in ts_text else int(ts_text)
        key = (name, tuple(sorted(labels.items())), ts_ms)
        if key in seen:
            out.problems.append(
                f"{where}:{number}: {name} repeats the series of line {seen[key]}; "
                "the later value is kept"
            )
            out.samples[_index_of(out.samples, seen[key])] = Sample(
                name, labels, value, ts_ms, number
            )
            seen[key] = number
            continue
        seen[key] = number
        out.samples.append(Sample(name, labels, value, ts_ms, number))
    return out


def lines_named(lines: list[int]) -> str:
    """Where samples a reader skipped are: ` (line 4)`, ` (lines 4, 9, 12, ...)`; empty where
    they came without lines (a Prometheus query)."""
    if not lines:
        return ""
    listed = ", ".join(str(n) for n in sorted(lines)[:5]) + (", ..." if len(lines) > 5 else "")
    return f" (line {listed})" if len(lines) == 1 else f" (lines {listed})"


def _index_of(samples: list[Sample], line: int) -> int:
    for i in range(len(samples) - 1, -1, -1):
        if samples[i].line == line:
            return i
    raise KeyError(line)


def _labels(text: str) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    pos = 0
    text = text.rstrip().rstrip(",")
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            return None
        value = m.group(2)
        if "\\" in value:
            value = re.sub(r"\\[\\\"n]", lambda e: _ESCAPES[e.group(0)], value)
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
