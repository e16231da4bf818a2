"""The generic webhook: the event as JSON, POSTed to a URL, signed with HMAC-SHA256 when a
secret is set, so the receiver can check it came from us and is fresh:
`X-Aifinops-Signature: sha256=HEX(HMAC(secret, f"{X-Aifinops-Timestamp}.{body}"))`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from aifinops.core.budgets import AlertEvent, event_to_dict
from aifinops.outputs.notify.base import (
    CREDENTIAL_WORDS,
    SENSITIVE_HEADERS,
    ChannelConfig,
    Outgoing,
    SecretRef,
    Secrets,
    http_url,
    register,
    secret_ref,
)

OURS = ("content-type", "x-aifinops-timestamp", "x-aifinops-signature")


def signature(secret: str, timestamp: int, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _var(header: object) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(header)).upper()


@register("webhook")
class WebhookConfig(ChannelConfig):
    """Any HTTP endpoint: `url`, `secret_env` (or `secret_file`) to sign with, extra
    `headers`; a credential header is written as a reference too (`env:VAR`)."""

    secrets: ClassVar[dict[str, str]] = {"secret": "AIFINOPS_WEBHOOK_SECRET"}

    url: str
    secret: SecretRef | None = None
    headers: dict[str, str | SecretRef] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "url")

    @model_validator(mode="before")
    @classmethod
    def _header_refs(cls, data: object) -> object:
        if not isinstance(data, Mapping) or not isinstance(data.get("headers"), Mapping):
            return data
        headers: dict[str, object] = {}
        for name, value in data["headers"].items():
            if str(name).lower() in OURS:
                raise ValueError(f"header {name} is set by aifinops")
            is_ref = isinstance(value, str) and value.partition(":")[0] in ("env", "file")
            credential = any(w in str(name).lower() for w in CREDENTIAL_WORDS)
            if is_ref or credential or str(name).lower() in SENSITIVE_HEADERS:
                how = f"`headers: {{{name}: env:WEBHOOK_{_var(name)}}}` (or file:/path)"
                value = secret_ref(str(value), f"header {name}", "", how)
            headers[name] = value
        return {**data, "headers": headers}

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        doc = event_to_dict(event) | {
            "percent": f"{event.percent:f}",
            "title": event.title(),
            "text": event.text(),
        }
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        headers = {
            name: value if isinstance(value, str) else secret(value, f"header {name}")
            for name, value in self.headers.items()
        }
        headers["Content-Type"] = "application/json; charset=utf-8"
        if self.secret is not None:
            timestamp = int(now.timestamp())
            headers["X-Aifinops-Timestamp"] = str(timestamp)
            headers["X-Aifinops-Signature"] = signature(
                secret(self.secret, "secret"), timestamp, body
            )
        return Outgoing(self.kind, "POST", self.url, headers, body)
