"""What a Node BullMQ app sets on its Worker and its Queue, declared per queue in the handler
module (`twenty_jobs.queue_settings`): worker options (concurrency, lock, limiter, retention,
custom backoff) where twenty-jobs serves the queue, and default job options where it adds jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import NodeWorker, arun_fixture
from twenty_jobs.errors import ConfigError
from twenty_jobs.runtime.config import QueueSettings, WorkerConfig, serve
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.wire.job import JobRecord

from .anyapp_handlers import DEFAULTS
from .conftest import wait_until
from .test_cli import cli
from .test_worker import burst

Q = "anyapp-settings"


def app_defaults() -> twenty_jobs.JobDefaults:
    """The seed apps' Queue defaults: attempts 3, exponential backoff 1 s, keep 100 / 500."""
    return twenty_jobs.JobDefaults(
        attempts=3, backoff=twenty_jobs.Backoff("exponential", 1000),
        remove_on_complete=twenty_jobs.KeepJobs(count=100), remove_on_fail=twenty_jobs.KeepJobs(count=500),
    )


async def test_declared_worker_options_serve_the_queue_node_jobs_included(
    registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    attempts: list[int] = []
    asked: list[tuple[int, str]] = []
    running = 0
    peak = 0

    def custom(attempt: int, kind: str, error: BaseException, job: JobRecord) -> int:
        asked.append((attempt, kind))
        return 10 * attempt

    twenty_jobs.queue_settings(
        Q, concurrency=2, lock_duration_ms=7000, limiter=twenty_jobs.Limiter(100, 1000),
        remove_on_complete=twenty_jobs.KeepJobs(count=2), backoff_strategies={"custom": custom}, registry=registry,
    )

    @twenty_jobs.job(queue=Q, name="Work", registry=registry)
    async def work(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        attempts.append(ctx.attempt)
        try:
            if data.get("fail_once") and ctx.attempt == 1:
                raise RuntimeError("once")
            assert await redis.pttl(f"{prefix}:{Q}:{ctx.job_id}:lock") > 5000  # the declared lock
        finally:
            running -= 1

    # A Node app's jobs: `backoff: {type: 'custom'}` names the Worker's backoffStrategy.
    await arun_fixture("add-raw", prefix=prefix, queue=Q, name="Work", data={"fail_once": True},
                       opts={"attempts": 3, "backoff": {"type": "custom"}})
    for i in range(5):
        await arun_fixture("add-raw", prefix=prefix, queue=Q, name="Work", data={"i": i}, opts={})
    assert await burst(prefix, registry, [Q]) == 0
    assert asked == [(1, "custom")] and sorted(attempts) == [1, 1, 1, 1, 1, 1, 2]
    assert peak == 2
    assert await redis.zcard(f"{prefix}:{Q}:completed") == 2  # the declared removeOnComplete
    assert await redis.get(f"{prefix}:{Q}:limiter") is not None  # the declared limiter counted starts


def test_the_work_commands_flags_override_what_the_module_declares() -> None:
    declared = QueueSettings(concurrency=5, limiter=twenty_jobs.Limiter(10, 1000), lock_duration_ms=60_000)
    plain = serve(WorkerConfig(queues=[Q]), Q, declared)
    assert (plain.concurrency, plain.limiter, plain.lock_duration_ms) == (5, twenty_jobs.Limiter(10, 1000), 60_000)
    flags = WorkerConfig(queues=[Q], concurrency=8, limiter=twenty_jobs.Limiter(3, 1000),
                         queue_settings={Q: QueueSettings(lock_duration_ms=9000)})
    served = serve(flags, Q, declared)
    assert (served.concurrency, served.limiter, served.lock_duration_ms) == (8, twenty_jobs.Limiter(3, 1000), 9000)
    assert serve(WorkerConfig(queues=[Q]), Q).concurrency == 1  # BullMQ's default for another app's queue


def test_bad_or_conflicting_declarations_are_refused_with_the_reason(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="concurrency must be a whole number >= 1"):
        twenty_jobs.queue_settings(Q, concurrency=0, registry=registry)
    with pytest.raises(ConfigError, match="Limiter max must be a whole number >= 1"):
        twenty_jobs.queue_settings(Q, limiter=twenty_jobs.Limiter(0, 1000), registry=registry)
    with pytest.raises(ConfigError, match="'exponential' is built in"):
        twenty_jobs.queue_settings(Q, backoff_strategies={"exponential": lambda *a: 1}, registry=registry)
    with pytest.raises(ConfigError, match="needs count= or age_s="):
        twenty_jobs.KeepJobs()
    with pytest.raises(ConfigError, match="attempts must be a whole number >= 1"):
        twenty_jobs.JobDefaults(attempts=0)
    twenty_jobs.queue_settings(Q, concurrency=2, registry=registry)
    twenty_jobs.queue_settings(Q, concurrency=2, registry=registry)  # a module imported twice
    with pytest.raises(ConfigError, match="declared twice, differently"):
        twenty_jobs.queue_settings(Q, concurrency=3, registry=registry)


async def test_a_queues_default_job_options_apply_to_what_python_adds_and_node_reads_them(
    registry: Registry, prefix: str, redis_url: str
) -> None:
    twenty_jobs.queue_settings(Q, job_defaults=app_defaults(), registry=registry)
    async with Producer(redis_url, prefix=prefix, registry=registry) as producer:  # no allow_any_queue needed
        plain = await producer.add(Q, "Work", {})
        own = await producer.add(Q, "Work", {}, retry_limit=0, backoff=twenty_jobs.Backoff("fixed", 50))
        (bulk,) = await producer.add_bulk(Q, "Work", [{}])
    views = {job_id: await arun_fixture("inspect-job", prefix=prefix, queue=Q, id=job_id)
             for job_id in (plain, own, bulk)}
    retention = {"removeOnComplete": {"count": 100}, "removeOnFail": {"count": 500}}
    for job_id in (plain, bulk):
        opts = views[job_id]["opts"]
        assert opts["attempts"] == 3 and opts["backoff"] == {"type": "exponential", "delay": 1000}
        assert {k: opts[k] for k in retention} == retention
    own_opts = views[own]["opts"]
    assert own_opts["attempts"] == 1 and own_opts["backoff"] == {"type": "fixed", "delay": 50}


async def test_enqueue_applies_the_default_job_options_the_imported_module_declares(
    prefix: str, redis: aioredis.Redis
) -> None:
    out = cli("enqueue", DEFAULTS, "Noop", "--import", "tests.anyapp_handlers", "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    opts = json.loads(await redis.hget(f"{prefix}:{DEFAULTS}:{out.stdout.strip()}", "opts") or "{}")
    assert opts["attempts"] == 3 and opts["backoff"] == {"type": "exponential", "delay": 1000}
    assert opts["removeOnComplete"] == {"count": 100} and opts["removeOnFail"] == {"count": 500}
    retry = cli("enqueue", DEFAULTS, "Noop", "--import", "tests.anyapp_handlers", "--retry-limit", "0",
                "--prefix", prefix)
    assert json.loads(await redis.hget(f"{prefix}:{DEFAULTS}:{retry.stdout.strip()}", "opts") or "{}")[
        "attempts"] == 1


async def test_a_node_worker_retries_a_python_added_job_with_the_queues_defaults(
    registry: Registry, prefix: str, redis_url: str, redis: aioredis.Redis
) -> None:
    twenty_jobs.queue_settings(Q, job_defaults=twenty_jobs.JobDefaults(
        attempts=3, backoff=twenty_jobs.Backoff("fixed", 100), remove_on_complete=True), registry=registry)
    async with Producer(redis_url, prefix=prefix, registry=registry) as producer:
        job_id = await producer.add(Q, "Work", {})
    async with NodeWorker(Q, prefix=prefix, fail_times=2, max_jobs=1) as node:
        await wait_until(lambda: len(node.records()) == 3, timeout=20)
        await node.await_exit(20)
        assert [r["attemptsMade"] for r in node.records()] == [0, 1, 2]
    assert await redis.exists(f"{prefix}:{Q}:{job_id}") == 0  # removeOnComplete: true
