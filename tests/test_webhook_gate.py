"""Current Twenty's webhook gates (real PostgreSQL): the port never delivers what Twenty would withhold.

Twenty's `CallWebhookJobsJob` drops events whose records the standard application's default role
may not read, and throttles per workspace behind a feature flag (docs/webhook-email.md). The port
delivers a batch only when it can show the gate admits it all, and hands it back otherwise.
"""

from __future__ import annotations

import uuid

import pytest

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import CoreDb, job_hash, run_burst
from twenty_jobs.jobs import webhook
from twenty_jobs.jobs.webhook_gate import webhook_gate
from twenty_jobs.runtime.producer import Producer


async def _add_gate_tables(core_db: CoreDb) -> None:
    """The columns of Twenty's FeatureFlagEntity, ObjectMetadataEntity (readability),
    RowLevelPermissionPredicateEntity and ObjectPermissionEntity that the gate reads."""
    s = core_db.schema
    await core_db.conn.execute(f"""
        CREATE TABLE "{s}"."featureFlag" (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            key character varying NOT NULL, value boolean NOT NULL, "workspaceId" uuid NOT NULL);
        CREATE TABLE "{s}"."objectMetadata" (id uuid PRIMARY KEY, "workspaceId" uuid NOT NULL,
            "nameSingular" character varying NOT NULL, readability character varying NOT NULL DEFAULT 'OPEN');
        CREATE TABLE "{s}"."rowLevelPermissionPredicate" (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            "workspaceId" uuid NOT NULL, "roleId" uuid, "objectMetadataId" uuid NOT NULL, "deletedAt" timestamptz);
        CREATE TABLE "{s}"."objectPermission" (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            "workspaceId" uuid NOT NULL, "roleId" uuid NOT NULL, "objectMetadataId" uuid NOT NULL,
            "canReadObjectRecords" boolean);
    """)


def test_workflow_run_updated_matches_only_exact_subscriptions() -> None:
    assert webhook.operations_to_match("workflowRun.updated") == ["workflowRun.updated"]
    assert webhook.operations_to_match("workflowRun.created") == [
        "workflowRun.created", "*.created", "workflowRun.*", "*.*"
    ]


async def test_wildcard_subscribers_do_not_get_workflow_run_updated(core_db: CoreDb) -> None:
    from twenty_jobs.jobs import db

    ws = str(uuid.uuid4())
    exact = await core_db.add_webhook(ws, "https://a.example/exact", ["workflowRun.updated"])
    for ops in (["*.*"], ["*.updated"], ["workflowRun.*"]):
        await core_db.add_webhook(ws, f"https://a.example/{ops[0]}", ops)
    found = await db.webhooks_for(ws, webhook.operations_to_match("workflowRun.updated"))
    assert [w.id for w in found] == [exact]


async def test_an_older_twenty_without_the_gate_tables_delivers(core_db: CoreDb) -> None:
    verdict = await webhook_gate(str(uuid.uuid4()), str(uuid.uuid4()))
    assert verdict.deliverable


async def test_gate_verdicts_follow_each_feature(core_db: CoreDb) -> None:
    await _add_gate_tables(core_db)
    s, conn = core_db.schema, core_db.conn
    ws, obj = str(uuid.uuid4()), str(uuid.uuid4())
    await conn.execute(f'INSERT INTO "{s}"."objectMetadata" (id, "workspaceId", "nameSingular") VALUES ($1, $2, $3)',
                       obj, ws, "person")
    assert (await webhook_gate(ws, obj)).deliverable

    # Flags of another workspace, or flags that are off, change nothing.
    await conn.execute(f'INSERT INTO "{s}"."featureFlag" (key, value, "workspaceId") VALUES '
                       "('IS_RECORD_SHARING_ENABLED', true, $1), ('IS_WEBHOOK_RATE_LIMIT_ENABLED', false, $2)",
                       str(uuid.uuid4()), ws)
    assert (await webhook_gate(ws, obj)).deliverable

    await conn.execute(f'UPDATE "{s}"."featureFlag" SET value = true WHERE "workspaceId" = $1', ws)
    verdict = await webhook_gate(ws, obj)
    assert verdict.reason is not None and "IS_WEBHOOK_RATE_LIMIT_ENABLED" in verdict.reason
    await conn.execute(f'DELETE FROM "{s}"."featureFlag"')

    for readability in ("PRIVATE", "INHERITED", "SYSTEM"):
        await conn.execute(f'UPDATE "{s}"."objectMetadata" SET readability = $1', readability)
        verdict = await webhook_gate(ws, obj)
        assert verdict.reason is not None and readability in verdict.reason
    await conn.execute(f'UPDATE "{s}"."objectMetadata" SET readability = $1', "OPEN")
    assert (await webhook_gate(ws, str(uuid.uuid4()))).reason is not None  # object unknown: cannot decide

    await conn.execute(f'INSERT INTO "{s}"."rowLevelPermissionPredicate" ("workspaceId", "objectMetadataId", '
                       '"deletedAt") VALUES ($1, $2, now())', ws, obj)
    assert (await webhook_gate(ws, obj)).deliverable  # a deleted predicate does not apply
    await conn.execute(f'INSERT INTO "{s}"."rowLevelPermissionPredicate" ("workspaceId", "objectMetadataId") '
                       "VALUES ($1, $2)", ws, obj)
    verdict = await webhook_gate(ws, obj)
    assert verdict.reason is not None and "row-level permission" in verdict.reason
    await conn.execute(f'DELETE FROM "{s}"."rowLevelPermissionPredicate"')

    await conn.execute(f'INSERT INTO "{s}"."objectPermission" ("workspaceId", "roleId", "objectMetadataId", '
                       '"canReadObjectRecords") VALUES ($1, $2, $3, false)', ws, str(uuid.uuid4()), obj)
    verdict = await webhook_gate(ws, obj)
    assert verdict.reason is not None and "may not read" in verdict.reason


async def test_a_gated_batch_is_not_delivered_and_fails_naming_the_feature(
    jobs_env: None, core_db: CoreDb, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_gate_tables(core_db)
    ws, obj = str(uuid.uuid4()), str(uuid.uuid4())
    await core_db.conn.execute(
        f'INSERT INTO "{core_db.schema}"."objectMetadata" (id, "workspaceId", "nameSingular", readability) '
        "VALUES ($1, $2, 'person', 'PRIVATE')", obj, ws)
    await core_db.add_webhook(ws, "https://a.example/all", ["*.*"])
    batch = {"name": "person.created", "workspaceId": ws, "objectMetadata": {"id": obj, "nameSingular": "person"},
             "events": [{"recordId": "r1", "properties": {"after": {"id": "r1"}}}]}
    job_id = await producer.add("webhook-queue", "CallWebhookJobsJob", batch, retry_limit=3)
    assert job_id is not None

    assert await run_burst(prefix, ["webhook-queue"]) == 0

    failed = await job_hash(prefix, "webhook-queue", job_id)
    assert "readability PRIVATE" in failed["failedReason"] and "Node worker" in failed["failedReason"]
    assert failed["atm"] == "1"  # no retry: another attempt cannot change the verdict
    # Nothing was enqueued for delivery.
    import redis.asyncio as aioredis

    from tests.jobs_support.fixtures import REDIS_URL
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        names = [await client.hget(f"{prefix}:webhook-queue:{i}", "name")
                 for i in await client.zrange(f"{prefix}:webhook-queue:failed", 0, -1)]
        names += [await client.hget(f"{prefix}:webhook-queue:{i}", "name")
                  for i in await client.zrange(f"{prefix}:webhook-queue:completed", 0, -1)]
    finally:
        await client.aclose()
    assert "CallWebhookJob" not in names
