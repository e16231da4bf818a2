"""An anomaly's alert: an `AlertEvent` (what every budget channel sends) that says what
moved and why, so anomalies go out through the budget channels, queue and retries
unchanged. Its `limit` is the expected value (a channel that shows spend against a limit
shows it against what was expected); its title and text are its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aifinops.core.anomaly import MONEY, PLACES, Anomaly, Contributor
from aifinops.core.budgets import (
    HUNDRED,
    AlertEvent,
    Channel,
    event_fields,
    event_to_dict,
    money_words,
)
from aifinops.core.windows import iso_z

KIND = "anomaly"


@dataclass(frozen=True)
class AnomalyEvent(AlertEvent):
    metric: str = ""
    delta: Decimal = Decimal(0)
    reference: str = ""

    @property
    def percent(self) -> Decimal:
        return (self.spend / self.limit * HUNDRED).quantize(Decimal("0.1"))

    def _figure(self, x: Decimal) -> str:
        return money_words(x, self.currency) if self.metric in MONEY else f"{x:f}"

    def title(self) -> str:
        word = "spike" if self.delta > 0 else "drop"
        expected = self._figure(self.forecast or Decimal(0))
        return (f"Anomaly: {self.metric.replace('_', ' ')} {word} for {self.scope} "
                f"({self._figure(self.spend)}, expected {expected})")  # fmt: skip

    def lines(self) -> list[str]:
        expected = self._figure(self.forecast or Decimal(0))
        out = [
            f"Scope: {self.scope}",
            f"Step: {self.period_start} to {self.period_end}",
            f"Actual: {self._figure(self.spend)}; expected {expected} ({self.reference}); "
            f"jump {self._figure(self.delta)}",
        ]
        if self.top_contributors:
            parts = [f"{n} {self._figure(v)}" for n, v in self.top_contributors]
            out.append("Contributors: " + ", ".join(parts))
        return out

    def own_facts(self) -> list[tuple[str, str]]:
        """What moved, against what was expected (no limit: an anomaly has none)."""
        expected = self._figure(self.forecast or Decimal(0))
        out = [
            ("Scope", self.scope),
            ("Actual", self._figure(self.spend)),
            ("Expected", f"{expected} ({self.reference})"),
            ("Jump", self._figure(self.delta)),
            ("Step", f"{self.period_start} to {self.period_end}"),
        ]
        if self.top_contributors:
            out.append(("Contributors", ", ".join(
                f"{n}: {self._figure(v)}" for n, v in self.top_contributors[:3])))  # fmt: skip
        return out

    def own_summary(self) -> str:
        word = "spike" if self.delta > 0 else "drop"
        return (f"Anomaly: {self.metric.replace('_', ' ')} {word}, severity "
                f"*{self.severity}*")  # fmt: skip


def anomaly_event(a: Anomaly, currency: str, at: str,
                  channels: tuple[Channel, ...]) -> AnomalyEvent:  # fmt: skip
    quantum = Decimal(1).scaleb(-PLACES[a.metric])
    return AnomalyEvent(
        key=a.id, action="fire", budget=f"anomaly {a.metric}", alert=a.metric,
        scope=f"{a.by}={a.scope}", threshold_percent=Decimal(0), basis=KIND,
        severity=a.severity, spend=a.actual,
        limit=a.expected if a.expected > 0 else quantum, forecast=a.expected,
        currency=currency, period_start=iso_z(a.start_ms) or "",
        period_end=iso_z(a.end_ms) or "", at=at,
        top_contributors=tuple((_named(c), c.delta) for c in a.contributors[:5]),
        channels=channels, metric=a.metric, delta=a.delta, reference=a.reference,
    )  # fmt: skip


def _named(c: Contributor) -> str:
    """A contributor's name with the tags found in it or under it (`ml/train (new, price
    change)`), so that a message says why, not only who."""
    tags: list[str] = []
    stack = [c]
    while stack:
        node = stack.pop()
        tags += [t for t in node.tags if t not in tags]
        stack.extend(reversed(node.children))
    return f"{c.name} ({', '.join(tags)})" if tags else c.name


def anomaly_event_to_dict(e: AnomalyEvent) -> dict[str, Any]:
    return {**event_to_dict(e), "kind": KIND, "metric": e.metric, "delta": str(e.delta),
            "reference": e.reference}  # fmt: skip


def anomaly_event_from_dict(d: Mapping[str, Any]) -> AnomalyEvent:
    return AnomalyEvent(**event_fields(d), metric=d["metric"], delta=Decimal(d["delta"]),
                        reference=d["reference"])  # fmt: skip
