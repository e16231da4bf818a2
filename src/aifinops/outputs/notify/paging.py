"""Paging channels: PagerDuty (Events API v2) and a Prometheus Alertmanager (API v2). Both
open an incident on `fire` and close it on `resolve`, matched by the alert's key."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from aifinops.core.budgets import AlertEvent, event_to_dict
from aifinops.outputs.notify.base import (
    ChannelConfig,
    Outgoing,
    SecretRef,
    Secrets,
    http_url,
    post,
    register,
)
from aifinops.outputs.notify.words import clip, spend_percent, utc_stamp

JSON = {"Content-Type": "application/json"}
SUMMARY_MAX = 1024  # PagerDuty's payload.summary
DEDUP_MAX = 255  # PagerDuty's dedup_key
PD_SEVERITY = {"info": "info", "warning": "warning", "critical": "critical"}


def dedup_key(key: str) -> str:
    """The alert key, or its digest where it is longer than PagerDuty keeps."""
    return key if len(key) <= DEDUP_MAX else hashlib.sha256(key.encode()).hexdigest()


@register("pagerduty")
class PagerDutyConfig(ChannelConfig):
    """A PagerDuty service's Events API v2 integration: its `routing_key` (a secret)."""

    secrets: ClassVar[dict[str, str]] = {"routing_key": "PAGERDUTY_ROUTING_KEY"}

    routing_key: SecretRef
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = Field(default="aifinops", min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "url")

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        body: dict[str, Any] = {
            "routing_key": secret(self.routing_key, "routing_key"),
            "event_action": "resolve" if event.action == "resolve" else "trigger",
            "dedup_key": dedup_key(event.key),
        }
        if event.action != "resolve":
            details = event_to_dict(event) | {
                "percent": f"{event.percent:f}",
                "spend_percent": f"{spend_percent(event):f}",
            }
            body["payload"] = {
                "summary": clip(event.title(), SUMMARY_MAX),
                "source": self.source,
                "severity": PD_SEVERITY[event.severity],
                "timestamp": utc_stamp(event.at),
                "component": event.budget,
                "group": event.scope,
                "class": f"budget-{event.basis}",
                "custom_details": details,
            }
        return Outgoing(self.kind, "POST", self.url, dict(JSON), json.dumps(body))

    def send(self, message: Outgoing, secret: Secrets, timeout: float) -> str:
        status, _ = post(message, timeout)
        sent = json.loads(message.body)
        return (
            f"{self.kind}: {sent['event_action']} of {sent['dedup_key']} accepted (HTTP {status})"
        )


ALERTNAME = "AifinopsBudgetThreshold"


@register("alertmanager")
class AlertmanagerConfig(ChannelConfig):
    """A Prometheus Alertmanager: its base `url`; `username` with `password_env`, or
    `token_env` (a bearer token) where it sits behind auth; extra `labels` to route by."""

    secrets: ClassVar[dict[str, str]] = {
        "password": "ALERTMANAGER_PASSWORD",
        "token": "ALERTMANAGER_TOKEN",
    }

    url: str
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "url")

    @model_validator(mode="after")
    def _auth(self) -> AlertmanagerConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give username and password_env (or password_file) together")
        if self.password is not None and self.token is not None:
            raise ValueError("give a username and password, or a token, not both")
        return self

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        labels = self.labels | {
            "alertname": ALERTNAME,
            "budget": event.budget,
            "threshold": f"{event.threshold_percent.normalize():f}",
            "basis": event.basis,
            "severity": event.severity,
            "period": event.period_start,
        }
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {"summary": event.title(), "description": event.text()},
        }
        if event.action == "resolve":
            # an end in the past resolves it; its start stays the one Alertmanager holds
            alert["endsAt"] = utc_stamp(now.isoformat())
        else:
            # Alertmanager ends an alert that is not re-sent after its resolve_timeout;
            # a budget alert holds until resolved, or until its period is over
            alert["startsAt"] = utc_stamp(event.at)
            alert["endsAt"] = utc_stamp(event.period_end)
        headers = dict(JSON)
        if self.password is not None:
            pair = f"{self.username}:{secret(self.password, 'password')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {secret(self.token, 'token')}"
        target = self.url.rstrip("/") + "/api/v2/alerts"
        return Outgoing(self.kind, "POST", target, headers, json.dumps([alert]))

    def send(self, message: Outgoing, secret: Secrets, timeout: float) -> str:
        status, _ = post(message, timeout)
        (alert,) = json.loads(message.body)
        done = "resolved" if "startsAt" not in alert else "fired"
        return (
            f"{self.kind}: {ALERTNAME} for budget {alert['labels']['budget']} {done} "
            f"at {self.url} (HTTP {status})"
        )
