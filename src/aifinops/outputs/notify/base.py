"""The channel registry and what every channel shares: typed configs whose secrets are
references (an environment variable or a file, never the value), the request a channel
would send (`Outgoing`, redacted for `--dry-run`), one HTTP post, and `deliver`."""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from aifinops.core.budgets import AlertEvent
from aifinops.errors import AifinopsError, ConfigError

REDACTED = "***"
# header values that carry a credential or are derived from one: shown as `Basic ***`
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-aifinops-signature"}
)
# a header whose name says it carries a credential (X-Api-Key, X-Auth-Token...): written
# as a reference too, as the sensitive ones are
CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "password", "session", "signature")


class DeliveryError(AifinopsError):
    """A channel could not deliver: the message names the channel type and the cause, and
    never a secret (a webhook URL's token, a routing key, a password)."""

    http_status = 502

    def __init__(self, channel: str, cause: str, hint: str | None = None):
        super().__init__(f"{channel}: {cause}", hint=hint)
        self.channel = channel
        self.cause = cause


@dataclass(frozen=True)
class Outgoing:
    """What a channel sends: an HTTP request, or a mail (`method` SMTP)."""

    channel: str
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


# -- secrets ----------------------------------------------------------------------------


class SecretRef(BaseModel):
    """Where a secret is read when a message goes out. Holds the reference, not the value,
    so a config can be printed, logged and stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference names an environment variable or a file")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            raise ValueError(
                "an environment variable's name is letters, digits and '_' (a secret's value "
                "goes in the variable, not here)"
            )
        return self

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    def read(self, env: Mapping[str, str], channel: str, what: str) -> str:
        if self.env is not None:
            value = (env.get(self.env) or "").strip()
            if not value:
                raise DeliveryError(
                    channel,
                    f"environment variable {self.env} (the {what}) is not set or empty",
                    hint=f"export {self.env}=... where aifinops runs",
                )
            return value
        path = Path(str(self.file)).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            cause = getattr(exc, "strerror", None) or type(exc).__name__
            raise DeliveryError(channel, f"cannot read the {what} from {path}: {cause}") from None
        if not value:
            raise DeliveryError(channel, f"the {what} file {path} is empty")
        return value


class Secrets:
    """Reads a config's secrets at delivery and remembers them, so that every text that
    leaves (an error, an Outgoing) can be scrubbed of them. In `dry` mode a secret that
    cannot be read stands as `***` instead of failing: a dry run needs no credentials."""

    def __init__(self, channel: str, env: Mapping[str, str], dry: bool = False):
        self.channel, self.env, self.dry = channel, env, dry
        self.values: list[str] = []

    def __call__(self, ref: SecretRef, what: str) -> str:
        try:
            value = ref.read(self.env, self.channel, what)
        except DeliveryError:
            if self.dry:
                return REDACTED
            raise
        self.values.append(value)
        return value

    def url(self, ref: SecretRef, what: str) -> str:
        """A secret that is a URL (a webhook's): read, and checked to be http(s)."""
        value = self(ref, what)
        if value != REDACTED and urllib.parse.urlsplit(value).scheme not in ("http", "https"):
            raise DeliveryError(
                self.channel, f"the {what} read from {ref} is not an http:// or https:// URL"
            )
        return value

    def scrub(self, text: str) -> str:
        for value in sorted(set(self.values), key=len, reverse=True):
            text = text.replace(value, mask(value))
        return text

    def redact(self, message: Outgoing) -> Outgoing:
        headers = {
            name: _mask_header(value) if name.lower() in SENSITIVE_HEADERS else self.scrub(value)
            for name, value in message.headers.items()
        }
        return replace(
            message,
            target=self.scrub(message.target),
            headers=headers,
            body=self.scrub(message.body),
        )


def mask(secret: str) -> str:
    """A secret as it may be shown: a URL keeps its scheme and host (which service it
    names), the rest is `***`."""
    parts = urllib.parse.urlsplit(secret)
    if parts.scheme in ("http", "https") and parts.hostname:
        port = f":{parts.port}" if _port(parts) else ""
        return f"{parts.scheme}://{parts.hostname}{port}/{REDACTED}"
    return REDACTED


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _mask_header(value: str) -> str:
    scheme, _, rest = value.partition(" ")
    return f"{scheme} {REDACTED}" if rest and scheme.isalpha() else REDACTED


# -- the registry and the configs -------------------------------------------------------


class ChannelConfig(BaseModel):
    """A channel type's config. A subclass names its secret fields in `secrets` (field ->
    an example variable name, for hints); each is written `FIELD_env: VAR`,
    `FIELD_file: PATH`, or `FIELD: env:VAR` / `FIELD: file:PATH`, and held as a SecretRef."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: ClassVar[str] = ""
    secrets: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _secret_refs(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for name, example in cls.secrets.items():
            forms = [k for k in (name, f"{name}_env", f"{name}_file") if data.get(k) is not None]
            if len(forms) > 1:
                raise ValueError(f"give the {name} one way: {' or '.join(forms)}")
            env, file = data.pop(f"{name}_env", None), data.pop(f"{name}_file", None)
            if env is not None:
                data[name] = {"env": env}
            elif file is not None:
                data[name] = {"file": file}
            elif isinstance(data.get(name), str):
                data[name] = secret_ref(data[name], name, example)
        return data

    @abstractmethod
    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        """The request for `event`, secrets read through `secret` (each channel type's)."""

    def send(self, message: Outgoing, secret: Secrets, timeout: float) -> str:
        """Send `message`; the one-line summary of what was delivered."""
        status, _ = post(message, timeout)
        return f"{self.kind}: posted to {mask(message.target)} (HTTP {status})"


def secret_ref(text: str, name: str, example: str, how: str | None = None) -> dict[str, str]:
    """`env:VAR` or `file:PATH` as a reference; anything else is a secret written inline,
    refused (its value is never repeated). `how` shows the right way, for the hint."""
    scheme, _, rest = text.partition(":")
    if scheme in ("env", "file") and rest.strip():
        return {scheme: rest.strip()}
    how = how or (
        f"`{name}_env: {example}` (or `{name}: env:{example}`, or `{name}_file: /run/secrets/...`)"
    )
    raise PydanticCustomError(
        "secret_inline",
        "the {name} is a secret and may not be written in the config",
        {"name": name, "how": how},
    )


C = TypeVar("C", bound=type[ChannelConfig])
_TYPES: dict[str, type[ChannelConfig]] = {}


def register(name: str) -> Callable[[C], C]:
    """Register a channel type under a stable name, as a plugin would."""

    def add(cls: C) -> C:
        if name in _TYPES:
            raise ValueError(f"channel type {name!r} is registered twice")
        cls.kind = name
        _TYPES[name] = cls
        return cls

    return add


def channel_types() -> list[str]:
    return sorted(_TYPES)


def channel_config(type: str, config: Mapping[str, Any], where: str) -> ChannelConfig:
    """A channel's config checked against its type's model; ConfigError for an unknown
    type, a bad field or a secret written inline. Messages never hold a field's value."""
    cls = _TYPES.get(type)
    if cls is None:
        raise ConfigError(
            f"unknown channel type {type!r}",
            where=where,
            hint=f"use one of: {', '.join(channel_types())}",
        )
    try:
        return cls.model_validate(config)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        for err in errors:
            if err["type"] == "secret_inline":
                raise ConfigError(
                    f"{type} channel: {err['msg']}",
                    where=where,
                    hint="read it from the environment or a file: " + err["ctx"]["how"],
                ) from None
        problems = "; ".join(_problem(err) for err in errors)
        raise ConfigError(
            f"invalid {type} channel: {problems}",
            where=where,
            hint=f"{type} takes: {', '.join(_fields(cls))}",
        ) from None


def _problem(err: Any) -> str:
    where = ".".join(str(x) for x in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _fields(cls: type[ChannelConfig]) -> list[str]:
    out = []
    for name, info in cls.model_fields.items():
        shown = info.alias or name
        out += [f"{shown}_env", f"{shown}_file"] if name in cls.secrets else [shown]
    return out


# -- outgoing and delivering ------------------------------------------------------------


def outgoing(
    cfg: ChannelConfig,
    event: AlertEvent,
    env: Mapping[str, str] = os.environ,
    now: datetime | None = None,
) -> Outgoing:
    """What `deliver` would send, secrets shown as `***` (for --dry-run); needs none of
    them to be set."""
    secrets = Secrets(cfg.kind, env, dry=True)
    return secrets.redact(cfg.message(event, secrets, now or datetime.now(UTC)))


def deliver(
    cfg: ChannelConfig,
    event: AlertEvent,
    env: Mapping[str, str] = os.environ,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> str:
    """Send `event` on the channel; a one-line summary, or DeliveryError for any failure
    (a secret not set, a refused connection, a timeout, an HTTP status not 2xx, SMTP)."""
    secrets = Secrets(cfg.kind, env)
    try:
        message = cfg.message(event, secrets, now or datetime.now(UTC))
        return secrets.scrub(cfg.send(message, secrets, timeout))
    except DeliveryError as exc:
        hint = secrets.scrub(exc.hint) if exc.hint else None
        raise DeliveryError(exc.channel, secrets.scrub(exc.cause), hint) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a redirect is a failure (status >= 300), and would drop the POST body anyway
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(message: Outgoing, timeout: float) -> tuple[int, str]:
    """POST `message`: (status, the start of the answer), or DeliveryError. Errors name the
    target's host only (a webhook URL's path is its token)."""
    where = mask(message.target)
    try:
        request = urllib.request.Request(
            message.target,
            data=message.body.encode(),
            headers={"User-Agent": "aifinops", **message.headers},
            method=message.method,
        )
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read(2048).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read(300).decode("utf-8", "replace").split())
        raise DeliveryError(
            message.channel,
            f"{where} answered HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""),
        ) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(
            message.channel,
            f"cannot reach {where}: {_reason(exc.reason, timeout)}",
            hint="check the URL and that the service is up",
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DeliveryError(
            message.channel, f"sending to {where} failed: {_reason(exc, timeout)}"
        ) from None


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, str) and "://" not in reason:
        return reason
    return type(reason).__name__


def http_url(value: str, what: str) -> str:
    """A plain (not secret) http(s) URL; one with a user and password in it is refused."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the {what} must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(
            f"the {what} may not hold a user or password; use the channel's secret fields"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"the {what} may not hold a query string (it often carries a token): send a "
            "credential as a header written as a reference (`headers: {X-Api-Key: env:VAR}`)"
        )
    return value
