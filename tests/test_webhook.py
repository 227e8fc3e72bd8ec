"""CallWebhookJobsJob's pieces: which webhooks match (real PostgreSQL), how payloads are built."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import CoreDb, job_hash, run_burst
from twenty_jobs.jobs import db, webhook
from twenty_jobs.jobs.webhook import WorkspaceEventBatch
from twenty_jobs.runtime.producer import Producer


def test_operations_to_match_are_twentys_four_patterns() -> None:
    assert webhook.operations_to_match("person.created") == ["person.created", "*.created", "person.*", "*.*"]
    # JS: "x".split(".")[1] is undefined, and a template literal prints it.
    assert webhook.operations_to_match("x") == ["x.undefined", "*.undefined", "x.*", "*.*"]


async def test_webhooks_for_matches_obj_op_star_op_obj_star_and_star_star(core_db: CoreDb) -> None:
    ws, other_ws = str(uuid.uuid4()), str(uuid.uuid4())
    wanted = {
        await core_db.add_webhook(ws, "https://a.example/exact", ["person.created"]),
        await core_db.add_webhook(ws, "https://a.example/any-object", ["*.created"]),
        await core_db.add_webhook(ws, "https://a.example/any-op", ["company.updated", "person.*"]),
        await core_db.add_webhook(ws, "https://a.example/all", ["*.*"]),
    }
    await core_db.add_webhook(ws, "https://a.example/other-object", ["company.created"])
    await core_db.add_webhook(ws, "https://a.example/other-op", ["person.updated", "*.deleted"])
    await core_db.add_webhook(ws, "https://a.example/deleted", ["*.*"], deleted=True)
    await core_db.add_webhook(other_ws, "https://a.example/other-workspace", ["*.*"])

    found = await db.webhooks_for(ws, webhook.operations_to_match("person.created"))

    assert {w.id for w in found} == wanted
    assert all(w.workspace_id == ws for w in found)


async def test_webhook_repr_never_shows_the_secret(core_db: CoreDb) -> None:
    ws = str(uuid.uuid4())
    await core_db.add_webhook(ws, "https://a.example/", secret="s3cr3t-value")
    [found] = await db.webhooks_for(ws, ["*.*"])
    assert found.secret == "s3cr3t-value"
    assert "s3cr3t" not in repr(found) and "s3cr3t" not in str(found)


async def test_a_workspace_id_that_is_not_a_uuid_matches_nothing(core_db: CoreDb) -> None:
    assert await db.webhooks_for("not-a-uuid", ["*.*"]) == []


async def test_missing_database_url_is_a_one_line_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.delenv("PG_DATABASE_URL", raising=False)
    with pytest.raises(db.DatabaseError, match="PG_DATABASE_URL is not set"):
        await db.webhooks_for(str(uuid.uuid4()), ["*.*"])


async def test_unreachable_database_error_names_setting_and_hides_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.setenv("PG_DATABASE_URL", "postgres://twenty:hunter2-pw@127.0.0.1:1/default")
    try:
        with pytest.raises(db.DatabaseError) as info:
            await db.webhooks_for(str(uuid.uuid4()), ["*.*"])
    finally:
        await db.dispose_engine()
    message = str(info.value)
    assert "PG_DATABASE_URL" in message and "127.0.0.1:1" in message
    assert "hunter2" not in message and "\n" not in message


def test_database_url_forms_twenty_uses_become_asyncpg_urls() -> None:
    assert db.asyncpg_url("postgres://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert db.asyncpg_url("postgresql://u@h/d?sslmode=require") == "postgresql+asyncpg://u@h/d?ssl=require"
    with pytest.raises(db.DatabaseError, match="postgres://"):
        db.asyncpg_url("mysql://u:secret@h/d")


def _batch(name: str, events: list[dict[str, Any]]) -> WorkspaceEventBatch:
    return WorkspaceEventBatch.model_validate(
        {"name": name, "workspaceId": "20202020-1c25-4d02-bf25-6aeccf7ea419",
         "objectMetadata": {"id": "om-1", "nameSingular": name.split(".")[0], "namePlural": "ignored"},
         "events": events}
    )


def _hook(secret: str = "whsec") -> db.Webhook:
    return db.Webhook(id="wh-1", workspace_id="ws", target_url="https://hooks.example/in",
                      operations=("*.*",), secret=secret)


def test_payload_keys_come_in_twentys_order_and_undefined_keys_are_left_out() -> None:
    batch = _batch("person.updated", [
        {"recordId": "r1", "userId": "u1", "workspaceMemberId": "m1",
         "properties": {"before": {"a": 1}, "after": {"a": 2}, "updatedFields": ["a"], "diff": {}}},
        {"recordId": "r2", "userId": None, "properties": {"before": {"b": 1}}},
        {"recordId": "r3", "properties": {"after": None, "before": None, "updatedFields": []}},
    ])
    first, second, third = webhook.build_payloads(batch, [_hook()])

    assert list(first) == ["targetUrl", "eventName", "objectMetadata", "workspaceId", "webhookId", "eventDate",
                           "userId", "workspaceMemberId", "record", "updatedFields", "secret"]
    assert first["objectMetadata"] == {"id": "om-1", "nameSingular": "person"}
    assert first["record"] == {"a": 2} and first["updatedFields"] == ["a"]
    # An explicit null stays (JSON.stringify writes null); a missing key stays missing (undefined).
    assert list(second) == ["targetUrl", "eventName", "objectMetadata", "workspaceId", "webhookId", "eventDate",
                            "userId", "record", "secret"]
    assert second["userId"] is None and second["record"] == {"b": 1}
    # `after ?? before ?? {}`; `[]` is truthy in JS, so an empty updatedFields is kept.
    assert third["record"] == {} and third["updatedFields"] == []
    assert first["eventDate"] == second["eventDate"]  # one `new Date()` per webhook
    assert first["eventDate"].endswith("Z") and len(first["eventDate"]) == 24


def test_a_webhook_records_secret_is_stripped_but_other_objects_keep_theirs() -> None:
    webhook_batch = _batch("webhook.created", [
        {"recordId": "r1", "properties": {"after": {"id": "w2", "secret": "leak-me", "targetUrl": "x"}}}
    ])
    [payload] = webhook.build_payloads(webhook_batch, [_hook("own-secret")])
    assert payload["record"] == {"id": "w2", "targetUrl": "x"}
    assert payload["secret"] == "own-secret"  # the delivering webhook's own secret, removed before sending

    other = _batch("note.created", [{"recordId": "r1", "properties": {"after": {"secret": "a field"}}}])
    [payload] = webhook.build_payloads(other, [_hook()])
    assert payload["record"] == {"secret": "a field"}


def test_payloads_are_chunked_by_twenty() -> None:
    events = [{"recordId": f"r{i}", "properties": {"after": {"i": i}}} for i in range(15)]
    hooks = [db.Webhook(id=f"wh-{n}", workspace_id="ws", target_url="t", operations=("*.*",)) for n in range(3)]
    payloads = webhook.build_payloads(_batch("person.created", events), hooks)
    assert [len(c) for c in webhook.chunked(payloads)] == [20, 20, 5]
    # Webhook-major order, as Twenty's nested loops produce it.
    assert [p["webhookId"] for p in payloads[:16]] == ["wh-0"] * 15 + ["wh-1"]


def test_ensure_absolute_url_matches_twenty_shared() -> None:
    assert webhook.ensure_absolute_url("  hooks.example/x ") == "https://hooks.example/x"
    assert webhook.ensure_absolute_url("http://a.example") == "http://a.example"
    assert webhook.ensure_absolute_url("HTTPS://A.example") == "HTTPS://A.example"
    assert webhook.ensure_absolute_url("ftp://a.example") == "https://ftp://a.example"


def test_invalid_batches_are_refused_with_the_field_named() -> None:
    from twenty_jobs.errors import PermanentJobError
    from twenty_jobs.runtime.registry import default_registry

    handler = default_registry.get("webhook-queue", "CallWebhookJobsJob")
    assert handler is not None
    with pytest.raises(PermanentJobError, match="events"):
        handler.parse({"name": "person.created", "workspaceId": "ws", "objectMetadata": {"id": "1",
                                                                                        "nameSingular": "p"}})


def test_metadata_payloads_come_in_twentys_order() -> None:
    batch = webhook.MetadataEventBatch.model_validate({
        "name": "metadata.fieldMetadata.created", "workspaceId": "ws", "metadataName": "fieldMetadata",
        "type": "created", "apiKeyId": "key-1",
        "events": [{"type": "created", "metadataName": "fieldMetadata", "properties": {"after": {"id": "f1"}}}],
    })
    assert webhook.metadata_operations_to_match(batch) == [
        "metadata.fieldMetadata.created", "metadata.fieldMetadata.*", "metadata.*.created", "metadata.*.*", "*.*"
    ]
    [payload] = webhook.build_metadata_payloads(batch, [_hook()])
    assert list(payload) == ["targetUrl", "eventName", "workspaceId", "webhookId", "eventDate", "apiKeyId",
                             "secret", "event"]
    assert payload["event"] == batch.events[0]


async def test_a_batch_job_with_the_database_down_fails_naming_the_setting_not_the_password(
    jobs_env: None, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_DATABASE_URL", "postgres://twenty:hunter2-pw@127.0.0.1:1/default")
    batch = {"name": "person.created", "workspaceId": str(uuid.uuid4()),
             "objectMetadata": {"id": "om", "nameSingular": "person"}, "events": []}
    job_id = await producer.add("webhook-queue", "CallWebhookJobsJob", batch, retry_limit=1)
    assert job_id is not None

    assert await run_burst(prefix, ["webhook-queue"]) == 0

    failed = await job_hash(prefix, "webhook-queue", job_id)
    assert failed["atm"] == "2"  # retried once (after WEBHOOK_RETRY_DELAY_MS), then failed
    assert "PG_DATABASE_URL" in failed["failedReason"] and "127.0.0.1:1" in failed["failedReason"]
    assert "hunter2" not in str(failed)
