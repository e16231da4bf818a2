"""The event in words, shared by the channels: its facts as (label, value) pairs, texts cut
to a provider's limit, instants as RFC 3339 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from aifinops.core.budgets import AlertEvent, money_words


def spend_percent(event: AlertEvent) -> Decimal:
    return (event.spend / event.limit * 100).quantize(Decimal("0.1"))


def facts(event: AlertEvent, joiner: str = "\n") -> list[tuple[str, str]]:
    """The event's details as (label, value) pairs, for fields and fact sets."""
    own = event.own_facts()
    if own is not None:
        return own
    cur = event.currency
    out = [
        ("Scope", event.scope),
        (
            "Spend",
            f"{money_words(event.spend, cur)} of {money_words(event.limit, cur)} "
            f"({spend_percent(event):f}%)",
        ),
        ("Forecast", "unknown" if event.forecast is None else money_words(event.forecast, cur)),
        ("Period", f"{event.period_start} to {event.period_end}"),
    ]
    if event.top_contributors:
        out.append(
            (
                "Top contributors",
                joiner.join(
                    f"{name}: {money_words(amount, cur)}"
                    for name, amount in event.top_contributors[:3]
                ),
            )
        )
    return out


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utc_stamp(iso: str) -> str:
    """An ISO 8601 instant as RFC 3339 in UTC (`...Z`), as PagerDuty and Alertmanager
    take it; a naive one is read as UTC."""
    at = datetime.fromisoformat(iso)
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
