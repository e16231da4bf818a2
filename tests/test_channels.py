"""Budget alert channels end to end, against real servers: a loopback HTTP server for the
webhooks (Slack, Teams, PagerDuty, generic), a real SMTP server (aiosmtpd, STARTTLS and
AUTH) for mail, a real Prometheus Alertmanager. Every expected value is written by hand
from the event below, never taken from what the code produced."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.budgets import AlertEvent
from aifinops.errors import ConfigError
from aifinops.outputs.notify import DeliveryError, channel_config, channel_types, deliver, outgoing
from tests.conftest import Served, free_port, need_binary

# the event every test sends: 8,123.45 of 10,000 USD spent, an 80% alert
EVENT = AlertEvent(
    key="ml-training/2026-11-01T00:00+0000/actual/80",
    action="fire",
    budget="ml-training",
    alert="actual-80pct",
    scope="teams ml-research",
    threshold_percent=Decimal("80"),
    basis="actual",
    severity="warning",
    spend=Decimal("8123.45"),
    limit=Decimal("10000"),
    forecast=Decimal("11250.00"),
    currency="USD",
    period_start="2026-11-01T00:00:00+00:00",
    period_end="2026-12-01T00:00:00+00:00",
    at="2026-11-20T09:30:00+00:00",
    top_contributors=(
        ("ml-research/train-llm", Decimal("5000.00")),
        ("ml-research/serve-chat", Decimal("2100.40")),
        ("ml-research/notebooks", Decimal("1023.05")),
    ),
)
RESOLVED = replace(
    EVENT, action="resolve", spend=Decimal("7650.00"), at="2026-11-21T08:00:00+00:00"
)
NOW = datetime(2026, 11, 20, 9, 30, 5, tzinfo=UTC)

TITLE = "Budget ml-training reached 81.2% of its limit (threshold 80%)"
SPEND = "8,123.45 USD of 10,000.00 USD (81.2%)"
PERIOD = "2026-11-01T00:00:00+00:00 to 2026-12-01T00:00:00+00:00"
TEXT = (
    f"{TITLE}\n"
    "Scope: teams ml-research\n"
    f"Spend: {SPEND}\n"
    "Forecast for the period: 11,250.00 USD\n"
    f"Period: {PERIOD}\n"
    "Top contributors: ml-research/train-llm 5,000.00 USD, ml-research/serve-chat 2,100.40 "
    "USD, ml-research/notebooks 1,023.05 USD"
)

CONTRIBUTORS = [
    "ml-research/train-llm: 5,000.00 USD",
    "ml-research/serve-chat: 2,100.40 USD",
    "ml-research/notebooks: 1,023.05 USD",
]

SLACK_TOKEN = "T0AIF1NOPS/B0BUDGET/xoxSLACKs3cr3tT0ken"
TEAMS_SIG = "sig=TEAMSs3cr3tS1gnature"
ROUTING_KEY = "R0UT1NGKEYs3cr3t0123456789abcdef"
HOOK_SECRET = "whsec-HOOKs3cr3t"
SMTP_PASSWORD = "Sm7p-PASSs3cr3t"
SECRETS = (SLACK_TOKEN, TEAMS_SIG, ROUTING_KEY, HOOK_SECRET, SMTP_PASSWORD)


def no_secret(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)


def received(served: Served, n: int = 0) -> tuple[str, dict[str, str], Any]:
    """The n-th POST: its path, its headers (lower-case names) and its JSON body."""
    path, raw = served.bodies[n]
    headers = {k.lower(): v for k, v in served.requests[n][1].items()}  # every request posts
    return path, headers, json.loads(raw)


# -- the registry and config -------------------------------------------------------------


def test_the_six_channel_types_are_registered() -> None:
    assert channel_types() == ["alertmanager", "email", "pagerduty", "slack", "teams", "webhook"]
    with pytest.raises(ConfigError) as err:
        channel_config("sms", {}, where="budgets.yaml: ml-training")
    assert err.value.where == "budgets.yaml: ml-training"
    assert "slack" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("kind", "base", "name", "variable"),
    [
        ("slack", {}, "webhook_url", "SLACK_WEBHOOK_URL"),
        ("teams", {}, "webhook_url", "TEAMS_WEBHOOK_URL"),
        ("pagerduty", {}, "routing_key", "PAGERDUTY_ROUTING_KEY"),
        ("webhook", {"url": "https://hooks.example.com/in"}, "secret", "AIFINOPS_WEBHOOK_SECRET"),
        (
            "email",
            {
                "host": "smtp.example.com",
                "from": "finops@example.com",
                "to": ["a@example.com"],
                "username": "alerts",
            },
            "password",
            "SMTP_PASSWORD",
        ),
        (
            "alertmanager",
            {"url": "http://am:9093", "username": "am"},
            "password",
            "ALERTMANAGER_PASSWORD",
        ),
        ("alertmanager", {"url": "http://am:9093"}, "token", "ALERTMANAGER_TOKEN"),
    ],
)
def test_secrets_are_references_never_values(
    kind: str, base: dict[str, Any], name: str, variable: str
) -> None:
    # three ways to point at the secret read alike
    forms = [{f"{name}_env": "MY_VAR"}, {name: "env:MY_VAR"}, {name: {"env": "MY_VAR"}}]
    configs = [channel_config(kind, base | form, where="w") for form in forms]
    assert all(getattr(c, name).env == "MY_VAR" for c in configs)
    in_file = channel_config(kind, base | {f"{name}_file": "/run/secrets/x"}, where="w")
    assert getattr(in_file, name).file == "/run/secrets/x"
    # a secret written inline is refused, with the way to write it, and not repeated
    literal = "https://hooks.slack.com/services/" + SLACK_TOKEN
    with pytest.raises(ConfigError) as err:
        channel_config(kind, base | {name: literal}, where="budgets.yaml: ml-training")
    assert f"{name}_env: {variable}" in (err.value.hint or "")
    assert SLACK_TOKEN not in str(err.value)
    assert SLACK_TOKEN not in repr(err.value)
    with pytest.raises(ConfigError, match="one way"):
        channel_config(kind, base | {f"{name}_env": "A", f"{name}_file": "/b"}, where="w")


def test_config_mistakes_are_config_errors() -> None:
    cases = [
        ("slack", {"webhook_url_env": "X", "channel": "#ops"}, "channel: Extra inputs"),
        ("email", {"host": "h", "from": "f@x"}, "to: Field required"),
        (
            "email",
            {
                "host": "h",
                "from": "f@x",
                "to": ["a@x"],
                "username": "u",
                "password_env": "P",
                "starttls": False,
            },
            "in clear",
        ),
        ("email", {"host": "h", "from": "f@x", "to": ["a@x"], "username": "u"}, "together"),
        ("webhook", {"url": "ftp://x/y"}, "http:// or https://"),
        ("webhook", {"url": "https://user:pw@x/y"}, "user or password"),
        (
            "alertmanager",
            {"url": "http://am", "token_env": "T", "username": "u", "password_env": "P"},
            "not both",
        ),
    ]
    for kind, config, words in cases:
        with pytest.raises(ConfigError, match=words) as err:
            channel_config(kind, config, where="w")
        assert "Value error" not in str(err.value)
    # a credential header of the generic webhook is a secret as well
    with pytest.raises(ConfigError) as err:
        channel_config(
            "webhook",
            {"url": "https://x/y", "headers": {"Authorization": "Bearer " + HOOK_SECRET}},
            where="w",
        )
    assert "env:WEBHOOK_AUTHORIZATION" in (err.value.hint or "")
    no_secret(err.value)


# -- Slack ---------------------------------------------------------------------------------


def slack_limits(body: dict[str, Any]) -> None:
    """Block Kit's documented limits."""
    blocks = body["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        assert block["type"] in {"header", "section", "context", "divider"}
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 1 <= len(block["text"]["text"]) <= 3000
            assert len(block["fields"]) <= 10
            assert all(1 <= len(f["text"]) <= 2000 for f in block["fields"])
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10


def test_slack_posts_block_kit(served: Served) -> None:
    served.routes["/services/" + SLACK_TOKEN] = [(200, b"ok")]
    env = {"SLACK_WEBHOOK_URL": served.url("/services/" + SLACK_TOKEN)}
    cfg = channel_config("slack", {"webhook_url_env": "SLACK_WEBHOOK_URL"}, where="w")
    port = served.server.server_address[1]
    assert (
        deliver(cfg, EVENT, env=env) == f"slack: posted to http://127.0.0.1:{port}/*** (HTTP 200)"
    )
    path, headers, body = received(served)
    assert path == "/services/" + SLACK_TOKEN
    assert headers["content-type"].startswith("application/json")
    assert body == {
        "text": TEXT,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": TITLE, "emoji": True}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Budget *ml-training*, alert `actual-80pct`: actual spend, "
                    "threshold 80%, severity *warning*",
                },
                "fields": [
                    {"type": "mrkdwn", "text": "*Scope*\nteams ml-research"},
                    {"type": "mrkdwn", "text": f"*Spend*\n{SPEND}"},
                    {"type": "mrkdwn", "text": "*Forecast*\n11,250.00 USD"},
                    {"type": "mrkdwn", "text": f"*Period*\n{PERIOD}"},
                    {"type": "mrkdwn", "text": "*Top contributors*\n" + "\n".join(CONTRIBUTORS)},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "aifinops · alert key "
                        "ml-training/2026-11-01T00:00+0000/actual/80 · 2026-11-20T09:30:00+00:00",
                    }
                ],
            },
        ],
    }
    slack_limits(body)


def test_slack_cuts_long_texts_to_its_limits(served: Served) -> None:
    served.routes["/hook"] = [(200, b"ok")]
    huge = replace(
        EVENT,
        budget="b" * 200,  # the title is longer than a header holds
        scope="team <a&b> " * 600,  # 6,600 characters, with characters Slack escapes
        top_contributors=(("x" * 2500, Decimal(1)),),
    )
    cfg = channel_config("slack", {"webhook_url": "env:HOOK"}, where="w")
    deliver(cfg, huge, env={"HOOK": served.url("/hook")})
    body = received(served)[2]
    slack_limits(body)
    header = body["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    scope = body["blocks"][1]["fields"][0]["text"]
    assert len(scope) <= 2000 and scope.endswith("…") and "&lt;a&amp;b&gt;" in scope
    # an escape is never cut in half
    assert scope.removesuffix("…").rpartition("&")[2].count(";") == 1


# -- Teams ---------------------------------------------------------------------------------


def test_teams_posts_an_adaptive_card(served: Served) -> None:
    served.routes["/workflows/42/triggers/manual/paths/invoke"] = [(202, b"")]
    env = {"TEAMS_HOOK": served.url("/workflows/42/triggers/manual/paths/invoke?" + TEAMS_SIG)}
    cfg = channel_config("teams", {"webhook_url_env": "TEAMS_HOOK"}, where="w")
    assert deliver(cfg, EVENT, env=env).endswith("(HTTP 202)")
    _, headers, body = received(served)
    assert headers["content-type"].startswith("application/json")
    assert body == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": TITLE,
                            "weight": "Bolder",
                            "size": "Medium",
                            "color": "Warning",
                            "wrap": True,
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "Scope", "value": "teams ml-research"},
                                {"title": "Spend", "value": SPEND},
                                {"title": "Forecast", "value": "11,250.00 USD"},
                                {"title": "Period", "value": PERIOD},
                                {
                                    "title": "Top contributors",
                                    "value": ", ".join(CONTRIBUTORS),
                                },
                            ],
                        },
                        {
                            "type": "TextBlock",
                            "text": "aifinops · alert actual-80pct · key "
                            "ml-training/2026-11-01T00:00+0000/actual/80",
                            "isSubtle": True,
                            "size": "Small",
                            "wrap": True,
                        },
                    ],
                },
            }
        ],
    }


# -- PagerDuty -----------------------------------------------------------------------------


def test_pagerduty_triggers_then_resolves_the_same_incident(served: Served) -> None:
    served.routes["/v2/enqueue"] = [(202, b'{"status":"success","message":"Event processed"}')]
    cfg = channel_config(
        "pagerduty", {"routing_key_env": "PD_KEY", "url": served.url("/v2/enqueue")}, where="w"
    )
    env = {"PD_KEY": ROUTING_KEY}
    key = "ml-training/2026-11-01T00:00+0000/actual/80"
    assert deliver(cfg, EVENT, env=env) == f"pagerduty: trigger of {key} accepted (HTTP 202)"
    assert deliver(cfg, RESOLVED, env=env) == f"pagerduty: resolve of {key} accepted (HTTP 202)"
    path, headers, trigger = received(served, 0)
    assert path == "/v2/enqueue" and headers["content-type"] == "application/json"
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": TITLE,
            "source": "aifinops",
            "severity": "warning",
            "timestamp": "2026-11-20T09:30:00Z",
            "component": "ml-training",
            "group": "teams ml-research",
            "class": "budget-actual",
            "custom_details": {
                "key": key,
                "action": "fire",
                "budget": "ml-training",
                "alert": "actual-80pct",
                "scope": "teams ml-research",
                "threshold_percent": "80",
                "basis": "actual",
                "severity": "warning",
                "spend": "8123.45",
                "limit": "10000",
                "forecast": "11250.00",
                "currency": "USD",
                "period_start": "2026-11-01T00:00:00+00:00",
                "period_end": "2026-12-01T00:00:00+00:00",
                "at": "2026-11-20T09:30:00+00:00",
                "top_contributors": [
                    ["ml-research/train-llm", "5000.00"],
                    ["ml-research/serve-chat", "2100.40"],
                    ["ml-research/notebooks", "1023.05"],
                ],
                "percent": "81.2",
                "spend_percent": "81.2",
            },
        },
    }
    # PagerDuty's documented payload limits and severities
    assert len(trigger["payload"]["summary"]) <= 1024 and len(key) <= 255
    assert trigger["payload"]["severity"] in {"critical", "error", "warning", "info"}
    resolve = received(served, 1)[2]
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}


def test_pagerduty_severity_and_a_long_summary(served: Served) -> None:
    served.routes["/e"] = [(202, b"{}")]
    cfg = channel_config("pagerduty", {"routing_key": "env:K", "url": served.url("/e")}, "w")
    critical = replace(EVENT, severity="critical", budget="n" * 1100)
    deliver(cfg, critical, env={"K": ROUTING_KEY})
    payload = received(served)[2]["payload"]
    assert payload["severity"] == "critical"
    assert len(payload["summary"]) == 1024 and payload["summary"].endswith("…")


# -- the generic webhook -------------------------------------------------------------------


def test_webhook_posts_the_event_signed(served: Served, tmp_path: Path) -> None:
    served.routes["/hooks/finops"] = [(204, b"")]
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text(HOOK_SECRET + "\n")  # as a mounted secret: a trailing newline
    cfg = channel_config(
        "webhook",
        {
            "url": served.url("/hooks/finops"),
            "secret_file": str(secret_file),
            "headers": {"X-Team": "platform", "Authorization": "env:HOOK_AUTH"},
        },
        where="w",
    )
    out = deliver(cfg, EVENT, env={"HOOK_AUTH": "Bearer " + ROUTING_KEY}, now=NOW)
    assert out.endswith("(HTTP 204)")
    raw = served.bodies[0][1]
    _, headers, body = received(served)
    # 2026-11-20T09:30:05Z as unix seconds, worked by hand: 20,777 days after 1970-01-01
    assert headers["x-aifinops-timestamp"] == "1795167005"
    expected = hmac.new(HOOK_SECRET.encode(), b"1795167005." + raw, hashlib.sha256).hexdigest()
    assert headers["x-aifinops-signature"] == "sha256=" + expected
    assert headers["authorization"] == "Bearer " + ROUTING_KEY
    assert headers["x-team"] == "platform"
    assert body == {
        "key": "ml-training/2026-11-01T00:00+0000/actual/80",
        "action": "fire",
        "budget": "ml-training",
        "alert": "actual-80pct",
        "scope": "teams ml-research",
        "threshold_percent": "80",
        "basis": "actual",
        "severity": "warning",
        "spend": "8123.45",
        "limit": "10000",
        "forecast": "11250.00",
        "currency": "USD",
        "period_start": "2026-11-01T00:00:00+00:00",
        "period_end": "2026-12-01T00:00:00+00:00",
        "at": "2026-11-20T09:30:00+00:00",
        "top_contributors": [
            ["ml-research/train-llm", "5000.00"],
            ["ml-research/serve-chat", "2100.40"],
            ["ml-research/notebooks", "1023.05"],
        ],
        "percent": "81.2",
        "title": TITLE,
        "text": TEXT,
    }
    # without a secret: no signature
    plain = channel_config("webhook", {"url": served.url("/hooks/finops")}, where="w")
    deliver(plain, EVENT, env={}, now=NOW)
    assert "x-aifinops-signature" not in received(served, 1)[1]


# -- failures ------------------------------------------------------------------------------


def test_a_server_error_is_a_delivery_error_without_the_secret(served: Served) -> None:
    served.routes["/services/" + SLACK_TOKEN] = [(500, b"internal_error")]
    env = {"SLACK_WEBHOOK_URL": served.url("/services/" + SLACK_TOKEN)}
    cfg = channel_config("slack", {"webhook_url_env": "SLACK_WEBHOOK_URL"}, where="w")
    with pytest.raises(DeliveryError) as err:
        deliver(cfg, EVENT, env=env)
    port = served.server.server_address[1]
    assert (
        str(err.value) == f"slack: http://127.0.0.1:{port}/*** answered HTTP 500 "
        "Internal Server Error: internal_error"
    )
    assert err.value.channel == "slack" and err.value.__cause__ is None
    # a server that echoes the secret back: scrubbed from the error
    served.routes["/e"] = [(400, f'{{"errors":["routing key {ROUTING_KEY} unknown"]}}'.encode())]
    pd = channel_config("pagerduty", {"routing_key_env": "K", "url": served.url("/e")}, "w")
    with pytest.raises(DeliveryError, match="HTTP 400") as err:
        deliver(pd, EVENT, env={"K": ROUTING_KEY})
    assert "routing key *** unknown" in str(err.value)
    no_secret(err.value, repr(err.value))


def test_a_redirect_is_a_failure(served: Served) -> None:
    served.routes["/moved"] = [(302, b"")]
    cfg = channel_config("webhook", {"url": served.url("/moved")}, where="w")
    with pytest.raises(DeliveryError, match="HTTP 302"):
        deliver(cfg, EVENT, env={})


def test_a_dead_port_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/{SLACK_TOKEN}"
    cfg = channel_config("slack", {"webhook_url_env": "SLACK_WEBHOOK_URL"}, where="w")
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="cannot reach") as err:
        deliver(cfg, EVENT, env={"SLACK_WEBHOOK_URL": url}, timeout=5)
    assert time.monotonic() - started < 2
    assert "Connection refused" in str(err.value)
    no_secret(err.value)


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts (the kernel's backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/e"
        cfg = channel_config("pagerduty", {"routing_key_env": "K", "url": url}, where="w")
        with pytest.raises(DeliveryError, match=r"timed out after 0\.3 s"):
            deliver(cfg, EVENT, env={"K": ROUTING_KEY}, timeout=0.3)


def test_a_missing_secret_names_where_it_was_looked_for(tmp_path: Path) -> None:
    cfg = channel_config("slack", {"webhook_url_env": "SLACK_WEBHOOK_URL"}, where="w")
    with pytest.raises(DeliveryError, match="environment variable SLACK_WEBHOOK_URL"):
        deliver(cfg, EVENT, env={})
    gone = tmp_path / "no-such-secret"
    pd = channel_config("pagerduty", {"routing_key_file": str(gone)}, where="w")
    with pytest.raises(DeliveryError, match=f"cannot read the routing_key from {gone}"):
        deliver(pd, EVENT, env={})
    with pytest.raises(DeliveryError, match="not an http"):
        deliver(cfg, EVENT, env={"SLACK_WEBHOOK_URL": "hooks.slack.com/" + SLACK_TOKEN})


def test_outgoing_shows_the_request_with_secrets_redacted(served: Served) -> None:
    env = {
        "SLACK": "https://hooks.slack.com/services/" + SLACK_TOKEN,
        "TEAMS": "https://prod-01.westus.logic.azure.com/workflows/1/invoke?" + TEAMS_SIG,
        "PD": ROUTING_KEY,
        "HOOK": HOOK_SECRET,
        "SMTP": SMTP_PASSWORD,
        "AM": SMTP_PASSWORD,
    }
    configs = {
        "slack": {"webhook_url_env": "SLACK"},
        "teams": {"webhook_url_env": "TEAMS"},
        "pagerduty": {"routing_key_env": "PD"},
        "webhook": {"url": "https://hooks.example.com/in", "secret_env": "HOOK"},
        "email": {
            "host": "smtp.example.com",
            "from": "finops@example.com",
            "to": ["ml@example.com"],
            "username": "alerts",
            "password_env": "SMTP",
        },
        "alertmanager": {
            "url": "http://am.example.com:9093/",
            "username": "am",
            "password_env": "AM",
        },
    }
    shown = {
        kind: outgoing(channel_config(kind, c, "w"), EVENT, env=env, now=NOW)
        for kind, c in configs.items()
    }
    for message in shown.values():
        no_secret(message, message.target, message.headers, message.body)
    assert shown["slack"].target == "https://hooks.slack.com/***"
    assert shown["teams"].target == "https://prod-01.westus.logic.azure.com/***"
    assert json.loads(shown["pagerduty"].body)["routing_key"] == "***"
    assert shown["webhook"].headers["X-Aifinops-Signature"] == "***"
    assert shown["webhook"].headers["X-Aifinops-Timestamp"] == "1795167005"
    assert shown["alertmanager"].headers["Authorization"] == "Basic ***"
    assert shown["alertmanager"].target == "http://am.example.com:9093/api/v2/alerts"
    assert (shown["email"].method, shown["email"].target) == ("SMTP", "smtp://smtp.example.com:587")
    assert shown["email"].headers["Subject"] == TITLE
    # a dry run needs no secret at all
    assert outgoing(channel_config("slack", configs["slack"], "w"), EVENT, env={}).target == "***"


def test_alertmanager_basic_auth_and_bearer_token(served: Served) -> None:
    served.routes["/api/v2/alerts"] = [(200, b"")]
    basic = {"url": served.url("/"), "username": "am-user", "password_env": "AM_PASS"}
    deliver(channel_config("alertmanager", basic, "w"), EVENT, env={"AM_PASS": SMTP_PASSWORD})
    token = {"url": served.url(""), "token_file": "/dev/null"}
    with pytest.raises(DeliveryError, match="is empty"):
        deliver(channel_config("alertmanager", token, "w"), EVENT, env={})
    token = {"url": served.url(""), "token_env": "AM_TOKEN"}
    deliver(channel_config("alertmanager", token, "w"), EVENT, env={"AM_TOKEN": ROUTING_KEY})
    pair = base64.b64encode(f"am-user:{SMTP_PASSWORD}".encode()).decode()
    assert received(served, 0)[1]["authorization"] == "Basic " + pair
    assert received(served, 1)[1]["authorization"] == "Bearer " + ROUTING_KEY


# -- email: a real SMTP server with STARTTLS and AUTH -------------------------------------


@dataclass
class MailServer:
    port: int  # STARTTLS
    tls_port: int  # implicit TLS
    cafile: str
    mails: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


OPENSSL_SELF_SIGNED = (
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
    "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem"
)


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) with a self-signed certificate, on two ports: one that
    requires STARTTLS, one that speaks TLS from the start; both require AUTH."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    need_binary("openssl")
    tmp = tmp_path_factory.mktemp("smtp")
    made = subprocess.run(OPENSSL_SELF_SIGNED.split(), cwd=tmp, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    server = MailServer(port=free_port(), tls_port=free_port(), cafile=str(tmp / "cert.pem"))

    class Handler:
        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            server.mails.append(envelope)
            return "250 OK"

    def authenticator(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data == (b"alerts", SMTP_PASSWORD.encode())
        if ok:
            server.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    common = {"hostname": "127.0.0.1", "server_hostname": "mail.test", "auth_required": True,
              "authenticator": authenticator}  # fmt: skip
    starttls = Controller(
        Handler(), port=server.port, tls_context=context, require_starttls=True, **common
    )
    # aiosmtpd offers AUTH only after STARTTLS: the implicit-TLS port takes mail without
    implicit = Controller(
        Handler(), port=server.tls_port, ssl_context=context, hostname="127.0.0.1",
        server_hostname="mail.test",
    )  # fmt: skip
    starttls.start()
    implicit.start()
    try:
        yield server
    finally:
        starttls.stop()
        implicit.stop()


def mail_config(server: MailServer, **changes: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "from": "finops@example.com",
        "to": ["ml-leads@example.com", "cfo@example.com"],
        "username": "alerts",
        "password_env": "SMTP_PASSWORD",
        "cafile": server.cafile,
        "timeout": 5,
    } | changes


def test_email_goes_over_starttls_with_auth(mail_server: MailServer) -> None:
    cfg = channel_config("email", mail_config(mail_server), where="w")
    out = deliver(cfg, EVENT, env={"SMTP_PASSWORD": SMTP_PASSWORD}, now=NOW)
    assert out == (
        "email: sent to ml-leads@example.com, cfo@example.com via "
        f"smtp://127.0.0.1:{mail_server.port} (starttls)"
    )
    envelope = mail_server.mails[-1]
    assert mail_server.logins[-1] == "alerts"
    assert envelope.mail_from == "finops@example.com"
    assert envelope.rcpt_tos == ["ml-leads@example.com", "cfo@example.com"]
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert mail["Subject"] == TITLE
    assert mail["From"] == "finops@example.com"
    assert mail["To"] == "ml-leads@example.com, cfo@example.com"
    assert mail["Date"] == "Fri, 20 Nov 2026 09:30:05 +0000"
    assert mail["X-Aifinops-Alert-Key"] == "ml-training/2026-11-01T00:00+0000/actual/80"
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert body.startswith(TEXT + "\n")
    assert f"Spend: {SPEND}" in body


def test_email_over_implicit_tls(mail_server: MailServer) -> None:
    config = mail_config(mail_server, port=mail_server.tls_port, ssl=True)
    with pytest.raises(DeliveryError, match="offers no AUTH"):
        deliver(channel_config("email", config, "w"), EVENT, env={"SMTP_PASSWORD": "x"})
    del config["username"], config["password_env"]
    cfg = channel_config("email", config, where="w")
    out = deliver(cfg, RESOLVED, env={}, now=NOW)
    assert out.endswith(f"via smtps://127.0.0.1:{mail_server.tls_port} (ssl)")
    mail = email.message_from_bytes(mail_server.mails[-1].content, policy=email.policy.default)
    assert mail["Subject"] == "Resolved: budget ml-training is back under 80%"


def test_email_failures_are_delivery_errors(mail_server: MailServer) -> None:
    sent = len(mail_server.mails)
    cfg = channel_config("email", mail_config(mail_server), where="w")
    with pytest.raises(DeliveryError, match="refused the login of alerts") as err:
        deliver(cfg, EVENT, env={"SMTP_PASSWORD": "wrong-" + SMTP_PASSWORD})
    no_secret(err.value, repr(err.value), err.value.hint)
    assert "wrong-" not in str(err.value)
    # the server's certificate is checked: without the CA it is not trusted
    untrusted = channel_config("email", mail_config(mail_server, cafile=None), where="w")
    with pytest.raises(DeliveryError, match="not trusted"):
        deliver(untrusted, EVENT, env={"SMTP_PASSWORD": SMTP_PASSWORD})
    with pytest.raises(DeliveryError, match="SMTP_PASSWORD"):
        deliver(cfg, EVENT, env={})
    no_ca = channel_config("email", mail_config(mail_server, cafile="/no/such/ca.pem"), "w")
    with pytest.raises(DeliveryError, match=r"cannot read cafile /no/such/ca\.pem"):
        deliver(no_ca, EVENT, env={"SMTP_PASSWORD": SMTP_PASSWORD})
    dead = channel_config("email", mail_config(mail_server, port=free_port()), where="w")
    with pytest.raises(DeliveryError, match="Connection refused"):
        deliver(dead, EVENT, env={"SMTP_PASSWORD": SMTP_PASSWORD})
    assert len(mail_server.mails) == sent


# -- Alertmanager: the real one ----------------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_binary("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("alertmanager")
    config = tmp / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    log = (tmp / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("alertmanager did not start: " + (tmp / "alertmanager.log").read_text())
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as answer:
        return [a for a in json.load(answer) if a["labels"].get("budget") == "ml-training"]


def test_alertmanager_fires_then_resolves(alertmanager: str) -> None:
    # Alertmanager judges by its own clock: a period around the real now
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(days=3), now + timedelta(days=27)
    live = replace(
        EVENT,
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        at=(now - timedelta(minutes=1)).isoformat(),
    )
    cfg = channel_config("alertmanager", {"url": alertmanager, "labels": {"team": "ml"}}, "w")
    out = deliver(cfg, live, env={}, now=now)
    assert out == (
        f"alertmanager: AifinopsBudgetThreshold for budget ml-training fired at {alertmanager} "
        "(HTTP 200)"
    )
    (alert,) = alerts(alertmanager)
    assert alert["labels"] == {
        "alertname": "AifinopsBudgetThreshold",
        "budget": "ml-training",
        "threshold": "80",
        "basis": "actual",
        "severity": "warning",
        "period": start.isoformat(),
        "team": "ml",
    }
    assert alert["annotations"] == {"summary": TITLE, "description": live.text()}
    assert alert["status"]["state"] == "active"
    assert datetime.fromisoformat(alert["startsAt"]) == now - timedelta(minutes=1)
    # it holds until resolved, or until the period is over
    assert datetime.fromisoformat(alert["endsAt"]) == end

    resolved = replace(live, action="resolve", spend=Decimal("7650.00"))
    assert "resolved" in deliver(cfg, resolved, env={}, now=datetime.now(UTC))
    # Alertmanager lists only alerts not yet ended: a resolved one is gone
    time.sleep(0.01)
    assert alerts(alertmanager) == []
