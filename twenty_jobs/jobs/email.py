"""Twenty's `email-queue`, in Python: EmailSenderJob.

Twenty's EmailService enqueues `EmailSenderJob` with nodemailer `SendMailOptions`
`{from, to, subject, text, html}` and `retryLimit: 3` (email.service.ts @ 253aa222); the job hands
them to the driver chosen by `EMAIL_DRIVER` (email-driver.factory.ts @ 0753537a):
* `LOGGER` (the default) only logs; here it logs the recipients and subject, never the body
  (Twenty's emails carry invitation and password-reset links);
* `SMTP` sends through EMAIL_SMTP_HOST:EMAIL_SMTP_PORT (587 by default), logging in only when
  both EMAIL_SMTP_USER and EMAIL_SMTP_PASSWORD are set, upgrading with STARTTLS when the server
  offers it unless EMAIL_SMTP_NO_TLS is true (smtp.driver.ts @ 1330f710: nodemailer with
  `pool: true`, `ignoreTLS` when no-TLS). Port 465 uses TLS from the start.

Like nodemailer's pool, one connection is kept and reused across jobs (checked with NOOP before
each message, re-opened when the server dropped it, recycled after MAX_MESSAGES_PER_CONNECTION),
and closed when the worker stops. A failure raises, so the job is retried by its attempts (and
backoff, when the producer set one); the message names the server and the cause, never the
password.

Data on `email-queue` that is not an EmailSenderJob (Twenty's newer campaign jobs) is not handled
here: serve email-queue from Python only for a Twenty version that puts nothing else on it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

import twenty_jobs
from twenty_jobs.errors import PermanentJobError, TwentyJobsError
from twenty_jobs.jobs.config import load
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.hooks import on_shutdown

QUEUE = "email-queue"
# nodemailer's pool default (maxMessages: 100): a connection is replaced after this many messages.
MAX_MESSAGES_PER_CONNECTION = 100
SMTP_TIMEOUT_S = 30.0

log = logging.getLogger("twenty_jobs.jobs.email")


class EmailSettings(BaseSettings):
    """Twenty's email settings, under Twenty's names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    driver: Literal["LOGGER", "SMTP"] = Field(default="LOGGER", alias="EMAIL_DRIVER")
    smtp_host: str | None = Field(default=None, alias="EMAIL_SMTP_HOST")
    smtp_port: int = Field(default=587, alias="EMAIL_SMTP_PORT", gt=0, lt=65536)
    smtp_user: str | None = Field(default=None, alias="EMAIL_SMTP_USER")
    smtp_password: SecretStr | None = Field(default=None, alias="EMAIL_SMTP_PASSWORD")
    smtp_no_tls: bool = Field(default=False, alias="EMAIL_SMTP_NO_TLS")

    @field_validator("driver", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        # Older Twenty releases spelled the driver in lower case (`smtp`).
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("smtp_host", "smtp_user", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def server(self) -> str:
        return f"{self.smtp_host}:{self.smtp_port}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        # smtp.driver.ts: `auth` only when both user and password are set.
        password = self.smtp_password.get_secret_value() if self.smtp_password else ""
        if self.smtp_user and password:
            return self.smtp_user, password
        return None


# -- data ----------------------------------------------------------------------------------------


class MailAddress(BaseModel):
    """nodemailer's `{name, address}` address object."""

    name: str = ""
    address: str


AddressField = str | MailAddress | list[str | MailAddress]


class EmailSenderJobData(BaseModel):
    """nodemailer SendMailOptions as Twenty's callers build them."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              extra="allow")

    from_: AddressField = Field(alias="from")
    to: AddressField
    subject: str = ""
    text: str | None = None
    html: str | None = None
    cc: AddressField | None = None
    bcc: AddressField | None = None
    reply_to: AddressField | None = None
    attachments: list[Any] | None = None

    def recipients_for_log(self) -> str:
        """`${sendMailOptions.to}` as Twenty's success log prints it (arrays comma-joined)."""
        return _js_string(self.to)


def _js_string(value: AddressField) -> str:
    if isinstance(value, list):
        return ",".join(_js_string(v) for v in value)
    if isinstance(value, MailAddress):
        return value.address
    return value


def _header_value(value: AddressField) -> str:
    """A header value from nodemailer's address forms (strings may already hold several)."""
    items = value if isinstance(value, list) else [value]
    parts: list[str] = []
    for item in items:
        if isinstance(item, MailAddress):
            parts.append(str(Address(display_name=item.name, addr_spec=item.address)))
        else:
            parts.append(item)
    return ", ".join(p for p in parts if p.strip())


def build_message(data: EmailSenderJobData) -> EmailMessage:
    """The MIME message nodemailer would build: text and/or HTML alternatives, Date, Message-ID."""
    if data.attachments:
        raise PermanentJobError("EmailSenderJob: attachments are not supported by twenty-jobs' email driver")
    msg = EmailMessage()
    try:
        msg["From"] = _header_value(data.from_)
        msg["To"] = _header_value(data.to)
        if data.cc:
            msg["Cc"] = _header_value(data.cc)
        if data.bcc:
            msg["Bcc"] = _header_value(data.bcc)  # aiosmtplib sends to it and strips the header
        if data.reply_to:
            msg["Reply-To"] = _header_value(data.reply_to)
        msg["Subject"] = data.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=_sender_domain(msg))
    except (ValueError, IndexError, TypeError) as exc:
        raise PermanentJobError(f"EmailSenderJob: invalid address or header: {exc}") from None
    if data.text is not None and data.html is not None:
        msg.set_content(data.text)
        msg.add_alternative(data.html, subtype="html")
    elif data.html is not None:
        msg.set_content(data.html, subtype="html")
    else:
        msg.set_content(data.text or "")
    return msg


def _sender_domain(msg: EmailMessage) -> str | None:
    header = msg["From"]
    addresses = getattr(header, "addresses", ()) if header is not None else ()
    for address in addresses:
        if address.domain:
            return str(address.domain)
    return None


# -- SMTP connection -----------------------------------------------------------------------------


class EmailSendError(TwentyJobsError):
    """Sending failed; the job retries. The message names the server, never the password."""


@dataclass(slots=True)
class _Connection:
    key: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    client: aiosmtplib.SMTP
    lock: asyncio.Lock
    sent: int = 0


_connection: _Connection | None = None


def _key(settings: EmailSettings) -> tuple[Any, ...]:
    return (settings.smtp_host, settings.smtp_port, settings.credentials, settings.smtp_no_tls)


def _new_client(settings: EmailSettings) -> aiosmtplib.SMTP:
    credentials = settings.credentials
    implicit_tls = settings.smtp_port == 465 and not settings.smtp_no_tls
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=credentials[0] if credentials else None,
        password=credentials[1] if credentials else None,
        use_tls=implicit_tls,
        # None = STARTTLS when the server offers it (nodemailer's default); False = never
        # (EMAIL_SMTP_NO_TLS, nodemailer's ignoreTLS).
        start_tls=False if (settings.smtp_no_tls or implicit_tls) else None,
        timeout=SMTP_TIMEOUT_S,
    )


async def _connection_for(settings: EmailSettings) -> _Connection:
    global _connection
    loop = asyncio.get_running_loop()
    key = _key(settings)
    current = _connection
    if current is not None and current.key == key and current.loop is loop:
        return current
    if current is not None and current.loop is loop:
        await _quit(current.client)
    _connection = _Connection(key, loop, _new_client(settings), asyncio.Lock())
    on_shutdown(close_smtp)
    return _connection


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), 5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


async def close_smtp() -> None:
    """Close the kept SMTP connection (a worker shutdown hook)."""
    global _connection
    current, _connection = _connection, None
    if current is not None and current.loop is asyncio.get_running_loop():
        await _quit(current.client)


async def _ensure_connected(conn: _Connection) -> None:
    client = conn.client
    if client.is_connected:
        if conn.sent < MAX_MESSAGES_PER_CONNECTION:
            try:
                await client.noop()  # the server may have dropped an idle connection
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        await _quit(client)
        conn.sent = 0
    await client.connect()


async def send_smtp(settings: EmailSettings, message: EmailMessage) -> None:
    if not settings.smtp_host:
        raise EmailSendError("EMAIL_DRIVER is SMTP but EMAIL_SMTP_HOST is not set")
    conn = await _connection_for(settings)
    async with conn.lock:
        step = "connect to"
        try:
            await _ensure_connected(conn)
            step = "send through"
            await conn.client.send_message(message)
            conn.sent += 1
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            conn.client.close()
            conn.sent = 0
            raise EmailSendError(
                f"cannot {step} SMTP server {settings.server} (EMAIL_SMTP_HOST/EMAIL_SMTP_PORT): "
                f"{_scrub(_describe(exc), settings)}"
            ) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"authentication failed (EMAIL_SMTP_USER/EMAIL_SMTP_PASSWORD): {exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = ", ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return f"recipients refused: {codes}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(text: str, settings: EmailSettings) -> str:
    """Whatever a server echoes, the password (plain or as sent in AUTH) never leaves here."""
    credentials = settings.credentials
    if not credentials:
        return text
    user, password = credentials
    secrets_ = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
    }
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


# -- the job -------------------------------------------------------------------------------------


def _addresses_for_log(value: AddressField | None) -> str:
    return _js_string(value) if value else ""


@twenty_jobs.job(queue=QUEUE, name="EmailSenderJob")
async def email_sender(data: EmailSenderJobData, ctx: JobContext) -> dict[str, Any]:
    settings = load(EmailSettings)
    message = build_message(data)
    recipients = data.recipients_for_log()
    if settings.driver == "LOGGER":
        # Twenty's LoggerDriver prints the whole mail; links in it are credentials, so not here.
        ctx.logger.info(
            "Email (EMAIL_DRIVER=LOGGER, not sent) to '%s'%s subject '%s' from '%s'",
            recipients,
            _cc_suffix(data),
            data.subject,
            _addresses_for_log(data.from_),
        )
        return {"driver": "LOGGER", "to": recipients}
    await send_smtp(settings, message)
    ctx.logger.info("Email to '%s' successfully sent", recipients)
    return {"driver": "SMTP", "to": recipients, "messageId": str(message["Message-ID"])}


def _cc_suffix(data: EmailSenderJobData) -> str:
    extra: Sequence[tuple[str, AddressField | None]] = (("cc", data.cc), ("bcc", data.bcc))
    return "".join(f" {name} '{_addresses_for_log(v)}'" for name, v in extra if v)
