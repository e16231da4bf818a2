"""Alert channels for budgets: a registry of channel types (slack, teams, email,
pagerduty, webhook, alertmanager), each with its own config model, registered as a plugin
would be (`@register("name")` on a `ChannelConfig`).

    cfg = channel_config("slack", {"webhook_url_env": "SLACK_WEBHOOK_URL"}, where="budget x")
    outgoing(cfg, event)   # what would be sent, secrets as *** (--dry-run)
    deliver(cfg, event)    # a one-line summary, or DeliveryError

Secrets are read from the environment or a file when a message goes out, never written in
the config, and never shown in an error, an Outgoing or a repr."""

from __future__ import annotations

from aifinops.outputs.notify import chat, paging, smtp, webhook
from aifinops.outputs.notify.base import (
    ChannelConfig,
    DeliveryError,
    Outgoing,
    SecretRef,
    channel_config,
    channel_types,
    deliver,
    outgoing,
    register,
)

__all__ = [
    "ChannelConfig",
    "DeliveryError",
    "Outgoing",
    "SecretRef",
    "channel_config",
    "channel_types",
    "chat",
    "deliver",
    "outgoing",
    "paging",
    "register",
    "smtp",
    "webhook",
]
