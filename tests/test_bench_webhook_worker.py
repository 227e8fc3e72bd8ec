"""node_fixture/bin/bench-webhook-worker.js, the Node side of the webhook benchmark, delivers
CallWebhookJob payloads the way Twenty does: every payload POSTed as JSON without its secret,
signed when the webhook has a secret, and it reports once the N-th job is done."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from tests.conftest import REPO
from tests.jobs_support.receiver import WebhookReceiver
from twenty_jobs import Producer

SCRIPT = REPO / "node_fixture" / "bin" / "bench-webhook-worker.js"
SECRET = "bench-secret"
JOBS = 3


def payload(receiver: WebhookReceiver, path: str, job: int, secret: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "targetUrl": receiver.url(path),
        "eventName": "person.created",
        "objectMetadata": {"id": "obj-1", "nameSingular": "person"},
        "workspaceId": "ws-1",
        "webhookId": f"wh-{path.strip('/')}",
        "eventDate": "2026-11-30T12:00:00.000Z",
        "record": {"id": f"rec-{job}", "name": "Ada \u00e9"},
    }
    if secret is not None:
        item["secret"] = secret
    return item


async def run_bench_worker(redis_url: str, prefix: str, jobs: int) -> dict[str, Any]:
    env = {**os.environ, "REDIS_URL": redis_url, "TJ_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), "--jobs", str(jobs), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("bench-webhook-worker did not finish its jobs within 60 s") from None
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["ready", "done"], events
    done: dict[str, Any] = events[-1]
    return done


async def test_node_webhook_worker_delivers_every_payload_signed_as_twenty_does(
    producer: Producer, redis_url: str, prefix: str
) -> None:
    async with WebhookReceiver({"/signed": SECRET}) as receiver:
        sent = []
        for job in range(JOBS):
            items = [payload(receiver, "/signed", job, SECRET), payload(receiver, "/plain", job, None)]
            sent.append(items)
            await producer.add("webhook-queue", "CallWebhookJob", items, retry_limit=3)

        done = await run_bench_worker(redis_url, prefix, JOBS)

        assert (done["processed"], done["jobs_failed"]) == (JOBS, 0)
        assert (done["deliveries_ok"], done["deliveries_failed"]) == (2 * JOBS, 0)
        signed, plain = receiver.received("/signed"), receiver.received("/plain")
        assert [r.signature_ok for r in signed] == [True] * JOBS
        assert [r.signature_ok for r in plain] == [None] * JOBS  # no secret: no signature headers
        for request in signed + plain:
            assert request.method == "POST"
            assert request.headers["content-type"] == "application/json"
        # Each body is the stored payload without its secret, keys in the stored order.
        expected = sorted(
            json.dumps({k: v for k, v in item.items() if k != "secret"}) for items in sent for item in items
        )
        assert sorted(json.dumps(r.json()) for r in signed + plain) == expected
