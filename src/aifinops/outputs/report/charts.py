"""The report's charts as PNG bytes: matplotlib's Agg backend on a figure of its own (no
pyplot, so no global state and no display), fonts from matplotlib's bundled DejaVu."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_BARS = 12  # the rest of a long list goes into one bar, "others"


def _config_dir() -> None:
    """Where matplotlib keeps its cache: a temporary folder when the home's is not writable
    (a container, a CI runner), which matplotlib would otherwise warn about."""
    if "MPLCONFIGDIR" in os.environ:
        return
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    mine = config / "matplotlib"
    target = next((p for p in (mine, config, Path.home()) if p.exists()), Path.home())
    if not os.access(target, os.W_OK):
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="aifinops-mpl-")


def _figure(width: float, height: float) -> tuple[Any, Any]:
    _config_dir()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, unit: str) -> bytes:
    """Horizontal bars, largest at the top; beyond MAX_BARS the smallest are summed into
    one bar "others" (the chart's total stays the table's)."""
    pairs = sorted(zip(labels, values, strict=True), key=lambda p: -p[1])
    if len(pairs) > MAX_BARS:
        rest = sum(v for _, v in pairs[MAX_BARS - 1 :])
        pairs = [*pairs[: MAX_BARS - 1], (f"others ({len(pairs) - MAX_BARS + 1})", rest)]
    fig, ax = _figure(7.0, 0.8 + 0.32 * max(len(pairs), 1))
    names = [p[0] for p in pairs][::-1]
    amounts = [p[1] for p in pairs][::-1]
    ax.barh(names, amounts, color="#2b6cb0")
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(unit)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(fig)


def daily_chart(days: Sequence[str], values: Sequence[float], title: str, unit: str) -> bytes:
    """Spend per day as columns, the day's date under each."""
    fig, ax = _figure(7.0, 2.6)
    ax.bar([d[5:10] for d in days], values, color="#2f855a")
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel(unit)
    ax.tick_params(labelsize=8)
    if len(days) > 14:
        ax.tick_params(axis="x", labelrotation=90)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(fig)
