"""Half-open UTC windows [start, end), the steps they are cut into, and the one time parser."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from aifinops.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
MAX_DURATION_S = 100 * 366 * 86400  # beyond any store's history (and datetime's reach)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """'30m', '1h', '7d', '2w' -> timedelta. Raises UsageError naming the flag on bad input."""
    match = _DURATION.match(text or "")
    if not match:
        raise UsageError(
            f"cannot read {text!r} as a duration",
            where=what,
            hint="use a number and a unit: 1m, 15m, 1h, 1d, 7d, 2w",
        )
    digits, unit = match.group(1).lstrip("0") or "0", match.group(2)
    if len(digits) > 15:  # past any store's reach, and past what int() reads at 4,300 digits
        raise UsageError(f"{what} {text!r} is longer than 100 years", where=what)
    amount = int(digits)
    if amount <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}", where=what)
    seconds = amount * _UNIT_SECONDS[unit]
    if seconds > MAX_DURATION_S:
        raise UsageError(f"{what} {text!r} is longer than 100 years", where=what)
    return timedelta(seconds=seconds)


ISO = "iso"  # in `parse_time(formats=...)`: ISO 8601, `Z` for UTC


def parse_time(
    text: str, *, tz: tzinfo = UTC, formats: Sequence[str] = (ISO,), epoch: bool = False
) -> datetime:
    """The one time parser, for flags and input files alike. The text (stripped) is read as
    seconds since the epoch when `epoch` is set and it is a number, else by the first of
    `formats` that reads it: `ISO` for ISO 8601, or a `strptime` format for a tool's own
    (nvidia-smi's `2026/11/23 10:36:00.123`). A time without a zone is in `tz`. Returns an
    aware UTC datetime; raises ValueError for text that is not a time (callers say where)."""
    raw = text.strip()
    if epoch:
        try:
            return datetime.fromtimestamp(float(raw), tz=UTC)
        except (ValueError, OverflowError, OSError):
            pass  # not a number (or out of range): try the formats
    for fmt in formats:
        try:
            if fmt == ISO:
                value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            else:
                value = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 moved past datetime's range by its offset
            break
    raise ValueError(f"cannot read time {raw!r}")


def parse_instant(text: str, *, what: str = "time") -> datetime:
    """A time given on a command line or in a request: ISO 8601 date or date-time; naive
    values are UTC. Raises UsageError naming the flag on bad input."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise UsageError(
            f"cannot read {text!r} as a time",
            where=what,
            hint="use ISO 8601, e.g. 2026-11-16 or 2026-11-16T08:00:00Z",
        ) from exc


def iso_ms(text: str | None) -> int | None:
    """An ISO 8601 time from an input file as epoch ms (naive = UTC); None for empty.
    Raises ValueError for text that is not a time (callers name the file and line)."""
    if not text:
        return None
    return to_ms(parse_time(text))


def to_ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def month_bounds(value: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) that holds `value`, as [first day, first day of the next)."""
    start = value.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return start, end


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise UsageError(
                f"window end {self.end.isoformat()} is not after its start "
                f"{self.start.isoformat()}",
                where="--window",
            )

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    @classmethod
    def parse(cls, text: str) -> Window:
        """'START,END' with ISO dates or date-times."""
        parts = [p for p in text.split(",")]
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise UsageError(
                f"cannot read {text!r} as a window",
                where="--window",
                hint="give START,END, e.g. 2026-11-16,2026-11-23",
            )
        return cls(
            parse_instant(parts[0], what="--window"), parse_instant(parts[1], what="--window")
        )

    @classmethod
    def last(cls, duration: timedelta, now: datetime) -> Window:
        return cls(now - duration, now)

    def steps(self, step: timedelta) -> list[Window]:
        """Cut into steps aligned to the window start; the last may be shorter."""
        out: list[Window] = []
        cursor = self.start
        while cursor < self.end:
            nxt = min(cursor + step, self.end)
            out.append(Window(cursor, nxt))
            cursor = nxt
        return out

    def iso(self) -> dict[str, str]:
        return {"start": _iso(self.start), "end": _iso(self.end)}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_z(value: datetime | int | None) -> str | None:
    """An instant (a datetime, or ms since the epoch) as ISO 8601 UTC ending in `Z`; None
    stays None."""
    if value is None:
        return None
    return _iso(from_ms(value) if isinstance(value, int) else value)


def align_down(value: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    epoch = value.timestamp()
    return datetime.fromtimestamp(epoch - (epoch % seconds), tz=UTC)


def align_up(value: datetime, step: timedelta) -> datetime:
    down = align_down(value, step)
    return down if down == value else down + step


_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
# `auto` (allocation.step's default): a window longer than this, with whole-day ends, is
# allocated per day, as the daily roll-up holds it; shorter ones per hour (decision 0023)
AUTO_DAILY_OVER_MS = 31 * _DAY_MS


def allocation_step(text: str, win: Window) -> int:
    """The allocation step of a window, in ms: `text` (a duration, or `auto`)."""
    if text.strip().lower() != "auto":
        return int(parse_duration(text, what="--step").total_seconds() * 1000)
    days = win.start_ms % _DAY_MS == 0 and win.end_ms % _DAY_MS == 0
    return _DAY_MS if days and win.end_ms - win.start_ms > AUTO_DAILY_OVER_MS else _HOUR_MS
