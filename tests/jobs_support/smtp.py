"""A real SMTP server on loopback (aiosmtpd, in its own thread) with a mailbox to inspect.

Variants: AUTH over plain text (auth_require_tls=False, as many internal relays have it),
STARTTLS offered with a self-signed certificate (made with the openssl CLI), or neither.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Mailbox:
    mails: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # aiosmtpd calls handle_DATA for every accepted message.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.lock:
            self.mails.append(
                Mail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content), session.peer,
                     session.ssl is not None, login)
            )
        return "250 Message accepted for delivery"

    def peers(self) -> set[Any]:
        return {m.peer for m in self.mails}


class Credentials:
    def __init__(self, user: str, password: str) -> None:
        self.user = user.encode()
        self.password = password.encode()
        self.failures = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        if not ok:
            self.failures += 1
        # handled=False: aiosmtpd answers 535 itself (True would leave the client waiting).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for localhost (cert.pem beside it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class SmtpServer:
    """`with SmtpServer(...) as server:`; `server.mailbox.mails` holds what arrived."""

    def __init__(
        self,
        port: int | None = None,
        *,
        credentials: Credentials | None = None,
        tls_context: ssl.SSLContext | None = None,
        mailbox: Mailbox | None = None,
    ) -> None:
        self.port = port or free_port()
        self.credentials = credentials
        self.tls_context = tls_context
        self.mailbox = mailbox or Mailbox()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            # AUTH offered over plain text (auth_require_tls=False), as on many internal relays; the
            # mailbox records who logged in, so tests see that the client did authenticate.
            kwargs.update(authenticator=self.credentials, auth_require_tls=False)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context)
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
