"""EmailSenderJob: the LOGGER and SMTP drivers against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import REDIS_URL, job_hash, run_burst
from tests.jobs_support.node import fixture
from tests.jobs_support.smtp import Credentials, SmtpServer, free_port, self_signed_context
from twenty_jobs.errors import ConfigError
from twenty_jobs.jobs import email as email_job
from twenty_jobs.jobs.config import load
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.worker import WorkerConfig, run_worker
from twenty_jobs.twenty.options import Backoff

Q = "email-queue"
PASSWORD = "smtp-Pa55word-Secret"


def smtp_env(monkeypatch: pytest.MonkeyPatch, port: int, *, user: str | None = None,
             password: str | None = None, no_tls: bool = False, host: str = "127.0.0.1") -> None:
    monkeypatch.setenv("EMAIL_DRIVER", "SMTP")
    monkeypatch.setenv("EMAIL_SMTP_HOST", host)
    monkeypatch.setenv("EMAIL_SMTP_PORT", str(port))
    if user is not None:
        monkeypatch.setenv("EMAIL_SMTP_USER", user)
    if password is not None:
        monkeypatch.setenv("EMAIL_SMTP_PASSWORD", password)
    monkeypatch.setenv("EMAIL_SMTP_NO_TLS", "true" if no_tls else "false")


def mail(**extra: object) -> dict[str, object]:
    """SendMailOptions as Twenty's EmailService builds them."""
    data: dict[str, object] = {
        "from": "Felix from Twenty <noreply@yourdomain.com>",
        "to": "ada@example.com",
        "subject": "Join your team on Twenty",
        "text": "Accept the invitation: https://app.example/invite/TOKEN-123",
        "html": "<p>Accept the <a href='https://app.example/invite/TOKEN-123'>invitation</a></p>",
    }
    data.update(extra)
    return data


async def test_logger_driver_logs_recipients_and_subject_never_the_body(
    jobs_env: None, producer: Producer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    job_id = await producer.add(Q, "EmailSenderJob", mail(cc=["bo@example.com"]), retry_limit=3)
    assert job_id is not None

    assert await run_burst(prefix, [Q]) == 0

    done = await job_hash(prefix, Q, job_id)
    assert done["returnvalue"] == {"driver": "LOGGER", "to": "ada@example.com"}
    lines = [r.getMessage() for r in caplog.records]
    assert any("to 'ada@example.com' cc 'bo@example.com' subject 'Join your team on Twenty'" in line
               for line in lines)
    assert not any("TOKEN-123" in line for line in lines)


async def test_node_enqueued_email_ends_in_the_smtp_mailbox_with_auth(
    jobs_env: None, prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with SmtpServer(credentials=Credentials("twenty", PASSWORD)) as server:
        smtp_env(monkeypatch, server.port, user="twenty", password=PASSWORD)
        data = mail(to=["ada@example.com", "Bob <bob@example.com>"], cc="carol@example.com",
                    bcc="audit@example.com", replyTo="support@example.com")
        added = fixture("add", "--queue", Q, "--name", "EmailSenderJob", "--data", json.dumps(data),
                        "--retry-limit", "3", prefix=prefix)

        assert await run_burst(prefix, [Q]) == 0

    [received] = server.mailbox.mails
    assert received.login == "twenty"  # AUTH with EMAIL_SMTP_USER / EMAIL_SMTP_PASSWORD
    assert received.mail_from == "noreply@yourdomain.com"
    assert sorted(received.rcpt_tos) == ["ada@example.com", "audit@example.com", "bob@example.com",
                                        "carol@example.com"]
    msg: EmailMessage = received.message
    assert msg["Subject"] == "Join your team on Twenty"
    assert msg["From"] == "Felix from Twenty <noreply@yourdomain.com>"
    assert msg["To"] == "ada@example.com, Bob <bob@example.com>"
    assert msg["Cc"] == "carol@example.com" and msg["Reply-To"] == "support@example.com"
    assert msg["Bcc"] is None and msg["Message-ID"] and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert "invite/TOKEN-123" in text_part.get_content() and "<a href=" in html_part.get_content()
    done = await job_hash(prefix, Q, added["id"])
    assert done["opts"]["attempts"] == 4 and done["returnvalue"]["driver"] == "SMTP"
    # Twenty's success line (`${to}` of an array prints comma-joined).
    assert any(r.getMessage().endswith("Email to 'ada@example.com,Bob <bob@example.com>' successfully sent")
               for r in caplog.records)
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)


async def test_a_wrong_password_fails_naming_the_server_but_never_the_password(
    jobs_env: None, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer(credentials=Credentials("twenty", "the-right-one")) as server:
        smtp_env(monkeypatch, server.port, user="twenty", password=PASSWORD)
        job_id = await producer.add(Q, "EmailSenderJob", mail())
        assert job_id is not None
        assert await run_burst(prefix, [Q]) == 0

    failed = await job_hash(prefix, Q, job_id)
    reason = failed["failedReason"]
    assert f"SMTP server 127.0.0.1:{server.port}" in reason and "authentication failed" in reason
    assert PASSWORD not in json.dumps(failed)
    assert server.mailbox.mails == []


async def test_without_credentials_no_auth_is_attempted(jobs_env: None) -> None:
    # Older Twenty releases spell the driver in lower case.
    only_user = email_job.EmailSettings.model_validate(
        {"EMAIL_DRIVER": "smtp", "EMAIL_SMTP_HOST": "h", "EMAIL_SMTP_USER": "u"}
    )
    assert only_user.driver == "SMTP" and only_user.credentials is None
    with SmtpServer() as server:
        settings = email_job.EmailSettings(EMAIL_DRIVER="SMTP", EMAIL_SMTP_HOST="127.0.0.1",
                                           EMAIL_SMTP_PORT=server.port, EMAIL_SMTP_USER="u")
        message = email_job.build_message(email_job.EmailSenderJobData.model_validate(mail()))
        await email_job.send_smtp(settings, message)
    assert [m.login for m in server.mailbox.mails] == [None]


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI makes the test cert")


@needs_openssl
async def test_starttls_is_used_when_offered_and_no_tls_turns_it_off(
    jobs_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = email_job.build_message(email_job.EmailSenderJobData.model_validate(mail()))
    with SmtpServer(tls_context=self_signed_context(tmp_path)) as server:
        def settings(no_tls: bool, host: str = "127.0.0.1") -> email_job.EmailSettings:
            return email_job.EmailSettings(EMAIL_DRIVER="SMTP", EMAIL_SMTP_HOST=host, EMAIL_SMTP_PORT=server.port,
                                           EMAIL_SMTP_NO_TLS=no_tls)

        # Opportunistic STARTTLS, certificate verified: an untrusted certificate fails the send...
        with pytest.raises(email_job.EmailSendError, match=f"127.0.0.1:{server.port}.*CERTIFICATE_VERIFY_FAILED"):
            await email_job.send_smtp(settings(False), message)
        # ...EMAIL_SMTP_NO_TLS=true never upgrades (nodemailer ignoreTLS): plain text, delivered...
        await email_job.send_smtp(settings(True), message)
        # ...and with the certificate trusted, the upgrade happens and the mail goes over TLS.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        await email_job.send_smtp(settings(False, host="localhost"), message)

    assert [m.tls for m in server.mailbox.mails] == [False, True]


async def test_the_connection_is_reused_and_reopened_after_the_server_drops_it(jobs_env: None) -> None:
    message = email_job.build_message(email_job.EmailSenderJobData.model_validate(mail()))
    server = SmtpServer().start()
    settings = email_job.EmailSettings(EMAIL_DRIVER="SMTP", EMAIL_SMTP_HOST="127.0.0.1", EMAIL_SMTP_PORT=server.port)
    try:
        for _ in range(3):
            await email_job.send_smtp(settings, message)
        assert len(server.mailbox.mails) == 3 and len(server.mailbox.peers()) == 1  # one connection
        server.stop()
        server = SmtpServer(server.port, mailbox=server.mailbox).start()  # restarted: old connection is gone
        await email_job.send_smtp(settings, message)
    finally:
        server.stop()
    assert len(server.mailbox.mails) == 4 and len(server.mailbox.peers()) == 2


async def test_smtp_down_then_up_the_job_retries_and_the_mail_arrives(
    jobs_env: None, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    smtp_env(monkeypatch, port)
    job_id = await producer.add(Q, "EmailSenderJob", mail(), retry_limit=3,
                                backoff=Backoff("fixed", 600))
    assert job_id is not None
    config = WorkerConfig(redis_url=REDIS_URL, prefix=prefix, queues=[Q], burst=True, grace_s=5,
                          install_signal_handlers=False)
    worker = asyncio.ensure_future(run_worker(config))
    server: SmtpServer | None = None
    try:
        for _ in range(200):  # the first attempt fails: nothing listens on the port
            if (await job_hash(prefix, Q, job_id)).get("atm") == "1":
                break
            await asyncio.sleep(0.02)
        server = SmtpServer(port).start()
        assert await asyncio.wait_for(worker, 20) == 0
    finally:
        if server is not None:
            server.stop()

    assert len(server.mailbox.mails) == 1
    done = await job_hash(prefix, Q, job_id)
    assert done["atm"] == "2" and done["returnvalue"]["driver"] == "SMTP"
    assert f"cannot connect to SMTP server 127.0.0.1:{port}" in done["failedReason"]  # the first attempt's


async def test_invalid_email_data_fails_at_once(jobs_env: None, producer: Producer, prefix: str) -> None:
    job_id = await producer.add(Q, "EmailSenderJob", {"from": "a@b.c", "subject": "no recipient"}, retry_limit=3)
    assert job_id is not None
    assert await run_burst(prefix, [Q]) == 0
    failed = await job_hash(prefix, Q, job_id)
    assert failed["atm"] == "1" and "to: Field required" in failed["failedReason"]


def test_a_bad_setting_names_the_variable(jobs_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_DRIVER", "SENDGRID")
    with pytest.raises(ConfigError, match="EMAIL_DRIVER"):
        load(email_job.EmailSettings)
    monkeypatch.setenv("EMAIL_DRIVER", "SMTP")
    monkeypatch.setenv("EMAIL_SMTP_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="EMAIL_SMTP_PORT"):
        load(email_job.EmailSettings)


def test_attachments_are_refused_rather_than_dropped() -> None:
    from twenty_jobs.errors import PermanentJobError

    data = email_job.EmailSenderJobData.model_validate(mail(attachments=[{"filename": "a.pdf", "content": "x"}]))
    with pytest.raises(PermanentJobError, match="attachments are not supported"):
        email_job.build_message(data)
    # nodemailer's {name, address} objects are accepted too.
    data = email_job.EmailSenderJobData.model_validate(mail(to={"name": "Zoë Ü", "address": "zoe@example.com"}))
    assert email_job.build_message(data)["To"] == "Zoë Ü <zoe@example.com>"
