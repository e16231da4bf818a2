"""The email channel: a plain-text mail over SMTP, with STARTTLS (the default) or
implicit TLS, and AUTH when a user is given. The password is never sent in clear."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import ClassVar

from pydantic import Field, model_validator

from aifinops.core.budgets import AlertEvent
from aifinops.outputs.notify.base import (
    ChannelConfig,
    DeliveryError,
    Outgoing,
    SecretRef,
    Secrets,
    register,
)


@register("email")
class EmailConfig(ChannelConfig):
    """SMTP: `host`, `port` (587; 465 with `ssl`), `from`, `to`, `username` with
    `password_env`/`password_file`, `cafile` to trust a private CA."""

    secrets: ClassVar[dict[str, str]] = {"password": "SMTP_PASSWORD"}

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    from_: str = Field(alias="from", min_length=3, pattern=r"@")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretRef | None = None
    starttls: bool = True
    ssl: bool = False  # implicit TLS (port 465); then starttls does not apply
    cafile: str | None = None
    timeout: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _auth(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give username and password_env (or password_file) together")
        if self.password is not None and not (self.starttls or self.ssl):
            raise ValueError(
                "AUTH without TLS would send the password in clear: keep "
                "starttls: true, or set ssl: true"
            )
        if any("@" not in address for address in self.to):
            raise ValueError("every address in `to` needs an @")
        return self

    @property
    def tls(self) -> str:
        return "ssl" if self.ssl else "starttls" if self.starttls else "none"

    @property
    def smtp_port(self) -> int:
        return self.port or (465 if self.ssl else 587)

    @property
    def target(self) -> str:
        return f"{'smtps' if self.ssl else 'smtp'}://{self.host}:{self.smtp_port}"

    def message(self, event: AlertEvent, secret: Secrets, now: datetime) -> Outgoing:
        headers = {
            "From": self.from_,
            "To": ", ".join(self.to),
            "Subject": event.title(),
            "Date": format_datetime(now),
            "X-Aifinops-Alert-Key": event.key,
        }
        body = f"{event.text()}\n\n-- \naifinops budget alert {event.key} ({event.action})\n"
        return Outgoing(self.kind, "SMTP", self.target, headers, body)

    def send(self, message: Outgoing, secret: Secrets, timeout: float) -> str:
        mail = EmailMessage()
        for name, value in message.headers.items():
            mail[name] = value
        # make_msgid() alone asks DNS for this host's name; the sender's domain will do
        mail["Message-ID"] = make_msgid(domain=self.from_.rpartition("@")[2].strip(">"))
        mail.set_content(message.body)
        password = secret(self.password, "password") if self.password else None
        port, wait = self.smtp_port, self.timeout or timeout
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            cause = getattr(exc, "strerror", None) or type(exc).__name__
            raise DeliveryError(self.kind, f"cannot read cafile {self.cafile}: {cause}") from None
        try:
            smtp = (
                smtplib.SMTP_SSL(self.host, port, timeout=wait, context=context)
                if self.ssl
                else smtplib.SMTP(self.host, port, timeout=wait)
            )
            with smtp:
                smtp.ehlo()
                if self.starttls and not self.ssl:
                    self._needs(smtp, "starttls", "use ssl: true for port 465")  # no downgrade
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.username and password:
                    self._needs(smtp, "auth", "drop username and password if it takes none")
                    smtp.login(self.username, password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                self.kind,
                f"{self.target} refused the login of {self.username} ({exc.smtp_code})",
                hint="check the user and the password the config points to",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                self.kind,
                f"the TLS certificate of {self.target} is not trusted ({exc.verify_message})",
                hint="set cafile to the CA that signed it",
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                self.kind, f"{self.target} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                self.kind, f"{self.target} refused every recipient: {', '.join(exc.recipients)}"
            ) from None
        except TimeoutError:
            raise DeliveryError(self.kind, f"{self.target} timed out after {wait:g} s") from None
        except (smtplib.SMTPException, OSError) as exc:
            cause = getattr(exc, "strerror", None) or type(exc).__name__
            raise DeliveryError(
                self.kind,
                f"cannot send through {self.target}: {cause}",
                hint="check host, port and TLS settings",
            ) from None
        sent = [a for a in self.to if a not in refused]
        return f"{self.kind}: sent to {', '.join(sent)} via {self.target} ({self.tls})"

    def _needs(self, smtp: smtplib.SMTP, extension: str, hint: str) -> None:
        if not smtp.has_extn(extension):
            raise DeliveryError(self.kind, f"{self.target} offers no {extension.upper()}", hint)


def _text(error: bytes | str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
    return " ".join(text.split())[:300]
