"""Chat channels: a Slack incoming webhook (Block Kit) and a Microsoft Teams workflow
webhook (an Adaptive Card). Both webhook URLs are secrets: whoever has one can post."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from aifinops.core.budgets import AlertEvent
from aifinops.outputs.notify.base import (
    ChannelConfig,
    Outgoing,
    SecretRef,
    Secrets,
    register,
)
from aifinops.outputs.notify.words import clip, facts

JSON = {"Content-Type": "application/json; charset=utf-8"}

# Slack's documented Block Kit limits (characters, counts)
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELDS_MAX = 10
FIELD_MAX = 2000
CONTEXT_TEXT_MAX = 2000
BLOCKS_MAX = 50
FALLBACK_MAX = 3000
ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # what Slack's mrkdwn needs escaped


def mrkdwn(text: str, limit: int) -> str:
    """`text` escaped for Slack mrkdwn (&, <, > as entities) and cut to `limit` characters
    without splitting an entity."""
    out: list[str] = []
    used = 0
    for ch in text:
        piece = ESCAPES.get(ch, ch)
        if used + len(piece) > limit:
            while out and used + 1 > limit:
                used -= len(out.pop())
            out.append("…")
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


def _slack_blocks(event: AlertEvent) -> list[dict[str, Any]]:
    threshold = f"{event.threshold_percent.normalize():f}%"
    what = "resolved" if event.action == "resolve" else f"severity *{event.severity}*"
    summary = event.own_summary() or (
        f"Budget *{event.budget}*, alert `{event.alert}`: {event.basis} spend, "
        f"threshold {threshold}, {what}"
    )
    fields = [
        {"type": "mrkdwn", "text": mrkdwn(f"*{label}*\n{value}", FIELD_MAX)}
        for label, value in facts(event)
    ][:FIELDS_MAX]
    context = f"aifinops · alert key {event.key} · {event.at}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(event.title(), HEADER_MAX), "emoji": True},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": mrkdwn(summary, SECTION_TEXT_MAX)},
            "fields": fields,
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": mrkdwn(context, CONTEXT_TEXT_MAX)}],
        },
    ]
    return blocks[:BLOCKS_MAX]


@register("slack")
class SlackConfig(ChannelConfig):
    """A Slack incoming webhook (https://hooks.slack.com/services/...)."""

    secrets: ClassVar[dict[str, str]] = {"webhook_url": "SLACK_WEBHOOK_URL"}

    webhook_url: SecretRef

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        # `text` is the fallback shown in notifications and where blocks cannot be
        body = {"text": mrkdwn(event.text(), FALLBACK_MAX), "blocks": _slack_blocks(event)}
        return Outgoing(
            self.kind,
            "POST",
            secret.url(self.webhook_url, "webhook_url"),
            dict(JSON),
            json.dumps(body, ensure_ascii=False),
        )


COLOURS = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


@register("teams")
class TeamsConfig(ChannelConfig):
    """A Microsoft Teams channel's workflow webhook (Power Automate "When a Teams webhook
    request is received"), which posts the Adaptive Card it is sent."""

    secrets: ClassVar[dict[str, str]] = {"webhook_url": "TEAMS_WEBHOOK_URL"}

    webhook_url: SecretRef

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        colour = "Good" if event.action == "resolve" else COLOURS.get(event.severity, "Default")
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "text": event.title(),
                    "weight": "Bolder",
                    "size": "Medium",
                    "color": colour,
                    "wrap": True,
                },
                {
                    "type": "FactSet",
                    "facts": [
                        {"title": label, "value": value}
                        for label, value in facts(event, joiner=", ")
                    ],
                },
                {
                    "type": "TextBlock",
                    "text": f"aifinops · alert {event.alert} · key {event.key}",
                    "isSubtle": True,
                    "size": "Small",
                    "wrap": True,
                },
            ],
        }
        body = {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }
        return Outgoing(
            self.kind,
            "POST",
            secret.url(self.webhook_url, "webhook_url"),
            dict(JSON),
            json.dumps(body, ensure_ascii=False),
        )
