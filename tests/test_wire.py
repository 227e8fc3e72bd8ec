"""The wire package: Twenty's queue table, option mapping, dedupe rule and key names."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import redis.asyncio as aioredis

from twenty_jobs.errors import ConfigError
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.twenty.options import (
    Backoff,
    JobOptions,
    bullmq_job_opts,
    cron_scheduler_id,
    is_already_waiting,
    queue_job_id_prefix,
)
from twenty_jobs.twenty.queues import TWENTY_QUEUES, queue_config, select_queues
from twenty_jobs.wire import keys

UUID_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


NEWER_QUEUES = (
    "record-export-queue", "campaign-queue", "campaign-send-queue", "campaign-engagement-queue",
    "event-log-queue", "application-lifecycle-hook-queue", "application-upgrade-queue",
)


def test_twenty_queue_table_has_current_twentys_25_queues() -> None:
    assert len(TWENTY_QUEUES) == 25
    for name in NEWER_QUEUES:
        cfg = queue_config(name)  # no longer refused as unknown
        assert (cfg.concurrency, cfg.lock_duration_ms, cfg.max_stalled_count) == (1, 30_000, 1)
        assert not cfg.config_verified
    assert all(q.config_verified for n, q in TWENTY_QUEUES.items() if n not in NEWER_QUEUES)


def test_twenty_queue_table_has_the_18_queues_of_1_14_with_their_settings() -> None:
    expected = {
        "task-assigned-queue": (4, 1), "messaging-queue": (2, 1), "webhook-queue": (2, 1),
        "cron-queue": (7, 1), "email-queue": (1, 1), "calendar-queue": (4, 1),
        "connected-account-sync-webhook-queue": (1, 5), "contact-creation-queue": (4, 1),
        "billing-queue": (1, 1), "workspace-queue": (5, 1), "entity-events-to-db-queue": (1, 1),
        "workflow-queue": (2, 1), "delayed-jobs-queue": (3, 1), "delete-cascade-queue": (6, 1),
        "logic-function-queue": (4, 10), "trigger-queue": (5, 1), "ai-queue": (5, 1), "ai-stream-queue": (2, 20),
    }
    assert {n: (q.priority, q.concurrency) for n, q in TWENTY_QUEUES.items() if n in expected} == expected
    for name, q in TWENTY_QUEUES.items():
        if name == "ai-stream-queue":
            assert (q.lock_duration_ms, q.max_stalled_count, q.bounded_shutdown_drain) == (600_000, 0, True)
        else:
            assert (q.lock_duration_ms, q.max_stalled_count) == (30_000, 1)


def test_legacy_queue_names_are_known_and_custom_names_need_opting_in() -> None:
    assert queue_config("serverless-function-queue").priority == 4
    assert queue_config("parse-message-queue").name == "parse-message-queue"
    with pytest.raises(ConfigError, match="Did you mean 'webhook-queue'"):
        queue_config("webhook-queeu")
    assert queue_config("my-own-queue", allow_custom=True).priority == 0


def test_queue_selection_follows_twentys_enabled_then_excluded_rule() -> None:
    all_q = ["webhook-queue", "email-queue", "cron-queue"]
    assert select_queues(all_q, [], []) == all_q
    assert select_queues(all_q, ["email-queue"], []) == ["email-queue"]
    assert select_queues(all_q, [], ["cron-queue"]) == ["webhook-queue", "email-queue"]
    assert select_queues(all_q, ["email-queue", "cron-queue"], ["cron-queue"]) == ["email-queue"]


def test_opts_equal_twentys_driver_table_field_by_field() -> None:
    opts = bullmq_job_opts(
        "email-queue",
        JobOptions(id="ws-1", retry_limit=3, delay=250, backoff=Backoff("exponential", 5000, 0.5)),
    )
    job_id = opts.pop("jobId")
    assert job_id.startswith("ws-1-") and UUID_SUFFIX.search(job_id) and len(job_id) == len("ws-1") + 37
    assert opts == {
        "priority": 1,  # email-queue's priority
        "attempts": 4,  # 1 + retryLimit
        "backoff": {"type": "exponential", "delay": 5000, "jitter": 0.5},
        "removeOnComplete": {"age": 14400, "count": 1000},
        "removeOnFail": {"age": 604800, "count": 1000},
        "delay": 250,
    }


def test_minimal_opts_have_no_job_id_backoff_or_delay_and_explicit_priority_wins() -> None:
    assert bullmq_job_opts("webhook-queue", JobOptions()) == {
        "priority": 2, "attempts": 1,
        "removeOnComplete": {"age": 14400, "count": 1000}, "removeOnFail": {"age": 604800, "count": 1000},
    }
    assert bullmq_job_opts("webhook-queue", JobOptions(priority=9))["priority"] == 9
    assert bullmq_job_opts("not-twenty", JobOptions())["priority"] == 0
    with pytest.raises(ValueError):
        JobOptions(retry_limit=-1)


def test_dedupe_matches_exact_ids_and_uuid_or_bulk_suffixed_prefixes() -> None:
    u = str(uuid.uuid4())
    assert is_already_waiting([f"sync-ws1-{u}"], "sync-ws1")
    assert is_already_waiting(["sync-ws1"], "sync-ws1")
    assert is_already_waiting([f"sync-ws1-{u}-3"], "sync-ws1")
    assert not is_already_waiting([f"sync-ws12-{u}"], "sync-ws1")
    assert not is_already_waiting(["42", "43"], "sync-ws1")
    assert queue_job_id_prefix(f"abc-{u}") == "abc"


def test_dedupe_prefix_strips_only_a_uuid_shaped_suffix() -> None:
    """Current Twenty: an id without a UUID suffix is its own prefix (1.14 cut 37 characters
    whatever they were, so two distinct long ids could collide)."""
    long_id = "workspace-sync-" + "x" * 40
    assert queue_job_id_prefix(long_id) == long_id
    assert not is_already_waiting([long_id], long_id[:-37])
    u = "8E2C1F0A-3B4D-4C5E-9F6A-7B8C9D0E1F2A"
    assert queue_job_id_prefix(f"abc-{u}") == "abc"
    assert queue_job_id_prefix(f"abc-{u}-12") == "abc"
    assert queue_job_id_prefix(f"abc-{u}x") == f"abc-{u}x"


def test_cron_scheduler_id_is_job_name_or_name_dot_id() -> None:
    assert cron_scheduler_id("CleanOnboardingWorkspacesJob") == "CleanOnboardingWorkspacesJob"
    assert cron_scheduler_id("SyncJob", "ws-1") == "SyncJob.ws-1"


def test_key_and_client_names_match_node_bullmq() -> None:
    assert keys.queue_key("bull", "email-queue", "wait") == "bull:email-queue:wait"
    assert keys.worker_client_name("bull", "email-queue") == "bull:ZW1haWwtcXVldWU="
    assert keys.worker_client_name("bull", "email-queue", "w1") == "bull:ZW1haWwtcXVldWU=:w:w1"


async def test_stored_job_hash_carries_twentys_opts(producer: Producer, redis: aioredis.Redis, prefix: str) -> None:
    job_id = await producer.add("webhook-queue", "CallWebhookJob", {"a": [1, "é"]}, id="w1", retry_limit=3)
    assert job_id is not None
    stored = await redis.hgetall(f"{prefix}:webhook-queue:{job_id}")
    assert stored["name"] == "CallWebhookJob"
    assert json.loads(stored["data"]) == {"a": [1, "é"]}
    assert stored["priority"] == "2"
    opts = json.loads(stored["opts"])
    assert opts["attempts"] == 4
    assert opts["removeOnComplete"] == {"age": 14400, "count": 1000}
    assert opts["removeOnFail"] == {"age": 604800, "count": 1000}
    # Every Twenty add carries a priority, so the job is in the prioritized set, not in wait.
    assert await redis.zscore(f"{prefix}:webhook-queue:prioritized", job_id) is not None
    assert await redis.llen(f"{prefix}:webhook-queue:wait") == 0


def test_queue_name_is_read_back_from_a_meta_key() -> None:
    assert keys.queue_of_meta_key("bull", "bull:email-queue:meta") == "email-queue"
    assert keys.queue_of_meta_key("bull", "bull:email-queue:wait") is None
    assert keys.queue_of_meta_key("bull", "other:email-queue:meta") is None
