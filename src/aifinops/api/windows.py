"""OpenCost's window grammar, for `/api/v1/allocation` and every `window=` of the API:
`today`, `yesterday`, `week` (this week so far, weeks from Monday), `lastweek`, `month`
(this month so far), `lastmonth`, a duration ending now (`30m`, `24h`, `7d`, `2w`), or two
instants `START,END` (RFC 3339 or Unix seconds). Times are UTC. A window that ends now ends at
the next minute, or for a window of a day or more (`7d`, `week`, `month`) at the next hour:
the same question asked again within that minute (hour) is the same window, so the
server's answer cache serves it, and a dashboard polling a month recomputes it hourly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aifinops.core.windows import Window, align_up, parse_instant
from aifinops.errors import UsageError

_DURATION = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HINT = (
    "today, yesterday, week, lastweek, month, lastmonth, a duration (30m, 24h, 7d, 2w), "
    "or START,END (RFC 3339 or Unix seconds)"
)


def parse_window(text: str, now: datetime, *, where: str = "window") -> Window:
    text = text.strip().lower()
    now = now.astimezone(UTC)
    end = align_up(now, timedelta(minutes=1))
    long_end = align_up(now, timedelta(hours=1))  # for windows of a day or more
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=midnight.weekday())
    first = midnight.replace(day=1)
    named = {
        "today": (midnight, end),
        "yesterday": (midnight - timedelta(days=1), midnight),
        "week": (monday, long_end),
        "lastweek": (monday - timedelta(days=7), monday),
        "month": (first, long_end),
        "lastmonth": ((first - timedelta(days=1)).replace(day=1), first),
    }
    if text in named:
        start, stop = named[text]
        return Window(start, max(stop, start + timedelta(minutes=1)))
    if m := _DURATION.fullmatch(text):
        size = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        if size <= timedelta(0):
            raise UsageError(f"an empty window {text!r}", where=where, hint=HINT)
        stop = long_end if size >= timedelta(days=1) else end
        return Window(stop - size, stop)
    parts = text.split(",")
    if len(parts) == 2 and all(p.strip() for p in parts):
        start, stop = (_instant(p.strip(), where) for p in parts)
        return Window(start, stop)
    raise UsageError(f"cannot read {text!r} as a window", where=where, hint=HINT)


def _instant(text: str, where: str) -> datetime:
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    return parse_instant(text.upper(), what=where)


def as_text(window: Window) -> str:
    """The window as `START,END`, what the service's `window=` takes."""
    return f"{window.start.isoformat()},{window.end.isoformat()}"
