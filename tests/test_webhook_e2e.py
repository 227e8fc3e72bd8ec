"""End to end: a Twenty-shaped event batch enqueued by Node (bullmq 5.40.0, as Twenty's
entity-event listener does) ends as signed deliveries that a receiver verifies."""

from __future__ import annotations

import json
import uuid

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import CoreDb, job_hash, job_ids, raw_job_field, run_burst
from tests.jobs_support.node import fixture, node_webhook_bodies
from tests.jobs_support.receiver import WebhookReceiver

Q = "webhook-queue"


async def test_node_enqueued_batch_ends_as_verified_signed_deliveries_in_chunks_of_20(
    jobs_env: None, core_db: CoreDb, receiver: WebhookReceiver, prefix: str
) -> None:
    ws = str(uuid.uuid4())
    secrets = {"/exact": "sec-exact-1", "/any-object": "sec-any-2", "/all": "sec-all-3"}
    receiver.secret_for_path.update(secrets)
    await core_db.add_webhook(ws, receiver.url("/exact"), ["person.created"], secrets["/exact"])
    await core_db.add_webhook(ws, receiver.url("/any-object"), ["*.created"], secrets["/any-object"])
    await core_db.add_webhook(ws, receiver.url("/all"), ["*.*"], secrets["/all"])
    await core_db.add_webhook(ws, receiver.url("/not-matching"), ["company.created"], "x")
    await core_db.add_webhook(ws, receiver.url("/deleted"), ["*.*"], "x", deleted=True)
    batch = {
        "name": "person.created",
        "workspaceId": ws,
        "objectMetadata": {"id": str(uuid.uuid4()), "nameSingular": "person"},
        "events": [
            {"recordId": f"r-{i}", "userId": "u-1", "workspaceMemberId": "m-1",
             "properties": {"after": {"id": f"r-{i}", "name": {"firstName": "Zoë", "lastName": "李"},
                                      "score": i / 10, "createdAt": "2026-01-01T00:00:00.000Z"}}}
            for i in range(15)
        ],
    }

    added = fixture("add", "--queue", Q, "--name", "CallWebhookJobsJob", "--data", json.dumps(batch),
                    "--retry-limit", "3", prefix=prefix)
    assert await run_burst(prefix, [Q]) == 0

    # 3 matching webhooks x 15 events, each verified like a Twenty webhook consumer does.
    assert len(receiver.requests) == 45
    assert all(r.signature_ok for r in receiver.requests)
    for path in secrets:
        bodies = [r.json() for r in receiver.received(path)]
        assert sorted(b["record"]["id"] for b in bodies) == sorted(f"r-{i}" for i in range(15))
        assert all(list(b)[:6] == ["targetUrl", "eventName", "objectMetadata", "workspaceId", "webhookId",
                                   "eventDate"] and "secret" not in b for b in bodies)
    assert receiver.received("/not-matching") == [] and receiver.received("/deleted") == []

    batch_job = await job_hash(prefix, Q, added["id"])
    assert batch_job["opts"]["attempts"] == 4  # Node wrote it: retryLimit 3
    assert batch_job["returnvalue"]["payloads"] == 45
    call_ids = batch_job["returnvalue"]["jobs"]
    assert set(call_ids) <= set(await job_ids(prefix, Q, "completed"))
    calls = [await job_hash(prefix, Q, job_id) for job_id in call_ids]
    # Twenty's chunking and options: 20 per job, retryLimit 3, the queue's priority 2.
    assert [len(c["data"]) for c in calls] == [20, 20, 5]
    assert all(c["opts"]["attempts"] == 4 and c["opts"]["priority"] == 2 for c in calls)
    assert all(c["returnvalue"]["delivered"] == len(c["data"]) for c in calls)
    # The bytes sent for the Python-built jobs are those Twenty's Node CallWebhookJob would send.
    stored = await raw_job_field(prefix, Q, call_ids[2], "data")
    assert stored is not None
    expected = {body.encode() for body in node_webhook_bodies(stored)}
    sent = {r.body for r in receiver.requests}
    assert expected <= sent


async def test_metadata_event_batches_reach_metadata_subscribers(
    jobs_env: None, core_db: CoreDb, receiver: WebhookReceiver, prefix: str
) -> None:
    ws = str(uuid.uuid4())
    receiver.secret_for_path["/meta"] = "sec-meta"
    await core_db.add_webhook(ws, receiver.url("/meta"), ["metadata.*.*"], "sec-meta")
    await core_db.add_webhook(ws, receiver.url("/records"), ["person.*"], "x")
    batch = {"name": "metadata.objectMetadata.updated", "workspaceId": ws, "metadataName": "objectMetadata",
             "type": "updated", "userId": "u-1",
             "events": [{"type": "updated", "metadataName": "objectMetadata", "recordId": "om-1",
                         "properties": {"before": {"labelSingular": "Person"}, "after": {"labelSingular": "Human"}}}]}

    fixture("add", "--queue", Q, "--name", "CallWebhookJobsForMetadataJob", "--data", json.dumps(batch),
            prefix=prefix)
    assert await run_burst(prefix, [Q]) == 0

    [delivered] = receiver.requests
    assert delivered.path == "/meta" and delivered.signature_ok is True
    body = delivered.json()
    assert list(body) == ["targetUrl", "eventName", "workspaceId", "webhookId", "eventDate", "userId", "event"]
    assert body["event"] == batch["events"][0]  # type: ignore[index]
