"""CallWebhookJob through the real worker: signed bytes, retries of only what failed, 4xx final,
timeouts, and the outbound safety guard. Real Redis, a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import pytest

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import (
    MetricsCapture,
    job_hash,
    job_ids,
    job_logs,
    raw_job_field,
    run_burst,
)
from tests.jobs_support.node import node_webhook_bodies
from tests.jobs_support.receiver import Reply, WebhookReceiver
from tests.jobs_support.smtp import free_port
from twenty_jobs.jobs import outbound as _outbound
from twenty_jobs.jobs import webhook
from twenty_jobs.runtime.producer import Producer

Q = "webhook-queue"
SECRET = "whsec-Th1s-Must-N0t-Leak"
WS = "20202020-1c25-4d02-bf25-6aeccf7ea419"


def item(url: str, webhook_id: str = "wh-1", secret: str = SECRET, **record: Any) -> dict[str, Any]:
    """A CallWebhookJob payload as Twenty's CallWebhookJobsJob writes it (keys in Twenty's order)."""
    return {
        "targetUrl": url,
        "eventName": "person.created",
        "objectMetadata": {"id": "om-1", "nameSingular": "person"},
        "workspaceId": WS,
        "webhookId": webhook_id,
        "eventDate": "2026-01-02T03:04:05.678Z",
        "userId": "u-1",
        "record": record or {"id": "r-1"},
        "secret": secret,
    }


async def enqueue(producer: Producer, data: Any, retry_limit: int = 3) -> str:
    job_id = await producer.add(Q, "CallWebhookJob", data, retry_limit=retry_limit)
    assert job_id is not None
    return job_id


async def test_body_is_nodes_json_stringify_and_the_signature_verifies(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str
) -> None:
    receiver.secret_for_path["/signed"] = SECRET
    tricky: dict[str, Any] = {
        "name": {"firstName": "Zoë", "lastName": "李 🚀", "sep": "a\u2028b\u2029c", "lone": "\ud800x"},
        "10": "ten", "2": "two", "score": 0.1, "big": 2**64, "tiny": 1e-7, "huge": 1e21, "neg0": -0.0,
        "nested": [[{"b": 1, "a": None}], True, "</script>", "tab\tnl\n\u0001"],
    }
    job_id = await enqueue(producer, [item(receiver.url("/signed"), **tricky),
                                      item(receiver.url("/unsigned"), secret="")])
    started_ms = int(time.time() * 1000)

    assert await run_burst(prefix, [Q]) == 0

    [signed] = receiver.received("/signed")
    [unsigned] = receiver.received("/unsigned")
    # Byte-for-byte what Twenty's Node job sends for the same stored job data.
    stored = await raw_job_field(prefix, Q, job_id, "data")
    assert stored is not None
    node_signed, node_unsigned = node_webhook_bodies(stored)
    assert signed.body == node_signed.encode()
    assert unsigned.body == node_unsigned.encode()
    # A consumer verifying HMAC-SHA256(secret, "<timestamp>:<body>") accepts it.
    assert signed.signature_ok is True
    assert started_ms <= int(signed.headers["x-twenty-webhook-timestamp"]) <= int(time.time() * 1000)
    assert re.fullmatch(r"[0-9a-f]{32}", signed.headers["x-twenty-webhook-nonce"])
    assert signed.headers["content-type"] == "application/json"
    assert signed.method == "POST"
    # The secret is stripped; no secret means no signature headers at all.
    assert SECRET not in signed.body.decode() and "secret" not in signed.json()
    assert unsigned.signature_ok is None and "x-twenty-webhook-nonce" not in unsigned.headers
    done = await job_hash(prefix, Q, job_id)
    assert done["returnvalue"] == {"attempt": 1, "delivered": 2, "rejected": []}


async def test_a_retry_resends_only_the_failed_payloads_and_4xx_is_final(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str,
    otel_metrics: MetricsCapture, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    for path in ("/ok", "/flaky", "/gone", "/limited"):
        receiver.secret_for_path[path] = SECRET
    receiver.reply("/flaky", Reply(503), Reply(500))  # then 200
    receiver.reply("/limited", Reply(429))  # then 200
    receiver.reply("/gone", Reply(410))
    job_id = await enqueue(producer, [
        item(receiver.url("/ok"), "wh-ok"), item(receiver.url("/flaky"), "wh-flaky"),
        item(receiver.url("/gone"), "wh-gone"), item(receiver.url("/limited"), "wh-limited"),
    ])

    assert await run_burst(prefix, [Q]) == 0

    # Each endpoint accepted its payload exactly once: no duplicates from the retries.
    assert [r.status for r in receiver.received("/ok")] == [200]
    assert [r.status for r in receiver.received("/flaky")] == [503, 500, 200]
    assert [r.status for r in receiver.received("/limited")] == [429, 200]
    assert [r.status for r in receiver.received("/gone")] == [410]  # 4xx: final, never retried
    assert all(r.signature_ok for r in receiver.requests)
    # Same payload bytes on every attempt (only timestamp, nonce and signature change).
    assert len({r.body for r in receiver.received("/flaky")}) == 1

    done = await job_hash(prefix, Q, job_id)
    assert done["atm"] == "3" and job_id in await job_ids(prefix, Q, "completed")
    # The job data was cut down to what still had to go before each retry.
    assert [i["webhookId"] for i in done["data"]] == ["wh-flaky"]
    assert done["returnvalue"] == {"attempt": 3, "delivered": 1, "rejected": []}
    # Every attempt's failures are in the job's log list (bull-board), with Twenty's fields.
    log = await job_logs(prefix, Q, job_id)
    assert len(log) == 2
    assert log[0].startswith("attempt 1: 1 delivered; refused for good: HTTP 410 from ")
    assert "wh-flaky" in log[0] and "wh-limited" in log[0] and "wh-flaky" in log[1]
    # Metrics and logs: one success per accepted payload, a line per outcome.
    assert otel_metrics.total("job/webhook-call-completed") == 3
    assert otel_metrics.sums("job/webhook-call-failed") == {
        (("kind", "transient"), ("status", "503")): 1, (("kind", "transient"), ("status", "500")): 1,
        (("kind", "transient"), ("status", "429")): 1, (("kind", "final"), ("status", "410")): 1,
    }
    lines = [r.getMessage() for r in caplog.records if "Webhook Response" in r.getMessage()]
    assert any("status=410 success=False" in line and "webhookId=wh-gone" in line for line in lines)
    assert sum("success=True" in line for line in lines) == 3
    assert not any(SECRET in r.getMessage() for r in caplog.records)


async def test_a_timeout_is_retried(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_MS", "300")
    receiver.reply("/slow", Reply(200, delay_s=1.5))  # longer than the timeout; then answers at once
    job_id = await enqueue(producer, [item(receiver.url("/slow"))])

    started = time.monotonic()
    assert await run_burst(prefix, [Q]) == 0

    assert time.monotonic() - started < 5
    assert len(receiver.received("/slow")) == 2
    done = await job_hash(prefix, Q, job_id)
    assert done["atm"] == "2" and done["returnvalue"]["delivered"] == 1


async def test_the_last_attempt_fails_the_job_with_a_summary_and_no_secret(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str
) -> None:
    receiver.reply("/down", *[Reply(503)] * 5)
    closed_port = free_port()
    job_id = await enqueue(producer, [
        item(receiver.url("/down"), "wh-down"),
        item(f"http://127.0.0.1:{closed_port}/nobody", "wh-refused"),
        item(receiver.url("/fine"), "wh-fine"),
    ], retry_limit=2)

    assert await run_burst(prefix, [Q]) == 0

    assert len(receiver.received("/down")) == 3 and len(receiver.received("/fine")) == 1
    failed = await job_hash(prefix, Q, job_id)
    assert failed["atm"] == "3"
    reason = failed["failedReason"]
    assert reason.startswith("giving up after 3 attempt(s): 2 webhook deliveries failed")
    assert "HTTP 503" in reason and "ConnectError" in reason and "wh-refused" in reason
    assert [i["webhookId"] for i in failed["data"]] == ["wh-down", "wh-refused"]
    stored = json.dumps(failed) + " ".join(await job_logs(prefix, Q, job_id))
    assert SECRET not in stored.replace(json.dumps(failed["data"]), "")  # only in the job's own data


async def test_an_old_single_object_payload_is_delivered(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str
) -> None:
    receiver.secret_for_path["/one"] = SECRET
    job_id = await enqueue(producer, item(receiver.url("/one")))
    assert await run_burst(prefix, [Q]) == 0
    assert [r.signature_ok for r in receiver.received("/one")] == [True]
    assert (await job_hash(prefix, Q, job_id))["returnvalue"]["delivered"] == 1


async def test_invalid_payloads_fail_the_job_at_once_with_the_field_named(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str
) -> None:
    job_id = await enqueue(producer, [{"targetUrl": 42, "eventName": "person.created"}])
    assert await run_burst(prefix, [Q]) == 0
    failed = await job_hash(prefix, Q, job_id)
    assert failed["atm"] == "1"
    assert "0.targetUrl: Input should be a valid string" in failed["failedReason"]
    assert "0.webhookId: Field required" in failed["failedReason"]
    assert receiver.requests == []


# -- outbound safety -----------------------------------------------------------------------------


async def test_safe_mode_refuses_loopback_targets_even_behind_dns_names(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "true")
    port = receiver.port
    targets = {
        "ip": f"http://127.0.0.1:{port}/a",
        "dns": f"http://localhost:{port}/b",  # a name: refused after resolution
        "decimal": f"http://2130706433:{port}/c",  # 127.0.0.1 written as one number
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/d",
        "bare": f"127.0.0.1:{port}/e",  # ensureAbsoluteUrl makes it https://
    }
    job_id = await enqueue(producer, [item(url, name) for name, url in targets.items()])

    assert await run_burst(prefix, [Q]) == 0

    assert receiver.requests == [] and receiver.connections == 0
    done = await job_hash(prefix, Q, job_id)
    assert done["atm"] == "1"  # refusals are final, not retried
    assert {r["webhookId"]: r["error"] for r in done["returnvalue"]["rejected"]} == {
        name: webhook.BLOCKED_ERROR for name in targets
    }


async def test_safe_mode_checks_every_redirect_hop(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 is allow-listed (Twenty's OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS); "localhost" is not.
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "true")
    monkeypatch.setenv("OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", "127.0.0.1")
    receiver.secret_for_path["/final"] = SECRET
    receiver.reply("/to-internal", Reply(307, headers={"Location": receiver.url("/final", host="localhost")}))
    receiver.reply("/to-allowed", Reply(308, headers={"Location": "/final?via=308"}))
    job_id = await enqueue(producer, [item(receiver.url("/to-internal"), "wh-internal"),
                                      item(receiver.url("/to-allowed"), "wh-allowed")])

    assert await run_burst(prefix, [Q]) == 0

    assert [r.path for r in receiver.requests if r.path != "/final"] == ["/to-internal", "/to-allowed"] or \
        [r.path for r in receiver.requests if r.path != "/final"] == ["/to-allowed", "/to-internal"]
    # The allowed redirect is followed with the same method, body and signature (307/308 semantics).
    [final] = receiver.received("/final")
    [first_hop] = receiver.received("/to-allowed")
    assert final.method == "POST" and final.body == first_hop.body and final.signature_ok is True
    done = await job_hash(prefix, Q, job_id)
    assert done["returnvalue"]["rejected"] == [{
        "success": False, "url": receiver.url("/to-internal"), "webhookId": "wh-internal",
        "eventName": "person.created", "error": webhook.BLOCKED_ERROR,
    }]


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
        ("169.254.169.254", True), ("0.0.0.0", True), ("100.64.0.1", True), ("224.0.0.1", True),
        ("::1", True), ("::", True), ("fd00::1", True), ("fe80::1", True), ("::ffff:10.0.0.1", True),
        ("::ffff:a9fe:a9fe", True), ("2002:7f00:1::", True), ("64:ff9b::a00:1", True),
        ("8.8.8.8", False), ("1.1.1.1", False), ("2606:4700:4700::1111", False), ("::ffff:8.8.8.8", False),
        # Every IPv6 form that embeds an IPv4 address is judged as that address: IPv4-compatible,
        # IPv4-translated, local-use NAT64 (RFC 8215, /48 layout of RFC 6052).
        ("::127.0.0.1", True), ("::7f00:1", True), ("::a9fe:a9fe", True), ("::ffff:0:7f00:1", True),
        ("64:ff9b:1:7f00:1:0:0:0", True), ("64:ff9b:1:a9fe:a9:fe00::", True),
        ("::8.8.8.8", False), ("::ffff:0:808:808", False), ("64:ff9b:1:808:8:800::", False),
    ],
)
def test_internal_addresses(address: str, internal: bool) -> None:
    assert _outbound.is_internal(address) is internal


async def test_allow_listed_hosts_still_cannot_reach_link_local_addresses() -> None:
    listed = _outbound.OutboundSettings.model_validate(
        {"OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS": "Intranet.Example, other"}
    )
    assert listed.allowed_internal_hosts == ["intranet.example", "other"]
    assert _outbound.is_blocked("10.0.0.5", "INTRANET.example", listed) is False
    assert _outbound.is_blocked("10.0.0.5", "elsewhere.example", listed) is True
    assert _outbound.is_blocked("169.254.169.254", "intranet.example", listed) is True


async def test_a_star_entry_or_safe_mode_off_turns_the_guard_off() -> None:
    """Current Twenty: `*` allows every host, and OUTBOUND_HTTP_SAFE_MODE_ENABLED=false is mapped
    to the same (docs/webhook-email.md)."""
    for env in ({"OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS": "*"}, {"OUTBOUND_HTTP_SAFE_MODE_ENABLED": "false"}):
        settings = _outbound.OutboundSettings.model_validate(env)
        assert not settings.guard_enabled
        assert await _outbound.resolve_checked("169.254.169.254", 80, settings) == ["169.254.169.254"]


def test_allow_list_entries_may_be_host_host_port_or_url_and_match_on_the_host() -> None:
    """Twenty accepts `host`, `host:port` and URLs; before, `host:port` and URLs never matched, so
    those deliveries were refused for good."""
    settings = _outbound.OutboundSettings.model_validate({"OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS":
        "intranet.example:8443, http://Hooks.Internal:9000/path, [fd00::5]:80, plain"})
    assert settings.allowed_internal_hosts == ["intranet.example", "hooks.internal", "fd00::5", "plain"]
    assert _outbound.is_blocked("10.0.0.5", "intranet.example", settings) is False
    assert _outbound.is_blocked("10.0.0.5", "hooks.internal", settings) is False
    assert _outbound.is_blocked("fd00::5", "fd00::5", settings) is False


async def test_bodies_over_50_mib_are_refused_before_sending() -> None:
    settings = _outbound.OutboundSettings.model_validate({})
    async with _outbound.new_client(1.0, settings) as client:
        with pytest.raises(_outbound.InvalidTarget, match="50 MiB"):
            await _outbound.send(client, "https://hooks.example/", b"x" * (_outbound.MAX_BODY_BYTES + 1), {},
                                 settings)


async def test_safe_mode_keeps_the_host_name_and_falls_back_to_the_next_checked_address(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "true")
    monkeypatch.setenv("OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", "localhost")
    receiver.secret_for_path["/named"] = SECRET
    real_resolve = _outbound.resolve_checked

    async def resolve_with_a_dead_first_answer(host: str, port: int, settings: Any) -> list[str]:
        # As when a name resolves to ::1 first but the service listens on 127.0.0.1 only.
        return ["127.0.0.2", *await real_resolve(host, port, settings)]

    monkeypatch.setattr(_outbound, "resolve_checked", resolve_with_a_dead_first_answer)
    await enqueue(producer, [item(receiver.url("/named", host="localhost"))])

    assert await run_burst(prefix, [Q]) == 0

    [named] = receiver.received("/named")
    assert named.headers["host"] == f"localhost:{receiver.port}"  # the name, not the pinned address
    assert named.signature_ok is True


async def test_credentials_in_the_url_become_basic_auth_and_never_reach_a_log(
    jobs_env: None, receiver: WebhookReceiver, producer: Producer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://hook-user:Url-Pa55@127.0.0.1:{receiver.port}/basic"
    job_id = await enqueue(producer, [item(url)])

    assert await run_burst(prefix, [Q]) == 0

    [request] = receiver.received("/basic")
    assert request.headers["authorization"] == "Basic aG9vay11c2VyOlVybC1QYTU1"  # hook-user:Url-Pa55
    assert not any("Url-Pa55" in r.getMessage() for r in caplog.records)
    assert "Url-Pa55" not in json.dumps(await job_hash(prefix, Q, job_id)).replace(url, "")
