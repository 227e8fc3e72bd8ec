"""What code that embeds the worker sees and configures: events for every job however it was
fetched, worker-level options of a Node app (retention, custom backoff), lifecycle hooks with a
per-worker context, and Node-shaped stack traces."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import arun_fixture
from twenty_jobs.errors import StartupError
from twenty_jobs.runtime import hooks
from twenty_jobs.runtime.config import Limiter, QueueSettings
from twenty_jobs.runtime.events import EventListener, JobEvent
from twenty_jobs.runtime.lifecycle import WorkerContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import run_worker
from twenty_jobs.wire.job import JobRecord
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.scripts.queue import NewJob, add_jobs

from .conftest import wait_until, worker_config
from .test_worker import burst

Q = "workspace-queue"
CUSTOM = "my-queue"


def listener() -> tuple[EventListener, dict[str, list[JobEvent]]]:
    events = EventListener()
    seen: dict[str, list[JobEvent]] = collections.defaultdict(list)
    for name in ("started", "progress", "completed", "failed", "retried", "error", "stalled"):
        events.on(name, seen[name].append)  # type: ignore[arg-type]
    return events, seen


@pytest.mark.parametrize("concurrency", [1, 10, 100])
async def test_an_active_observer_sees_every_job_once_at_any_concurrency(
    producer: Producer, registry: Registry, prefix: str, concurrency: int
) -> None:
    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: dict[str, int], ctx: Any) -> int:
        await asyncio.sleep(0)
        return data["i"]

    ids = await producer.add_bulk(Q, "N", [{"i": i} for i in range(300)])
    events, seen = listener()
    assert await burst(prefix, registry, concurrency=concurrency, observers=[events]) == 0
    # Most of these jobs are fetched by the call that finished the previous one: all are seen.
    assert sorted(e.job_id for e in seen["started"]) == sorted(ids)
    completed = {e.job_id: e.job for e in seen["completed"]}
    assert sorted(completed) == sorted(ids)
    assert all(job is not None and job.returnvalue == job.data["i"] and job.attempts_made == 1
               for job in completed.values())


async def test_progress_retries_failures_and_stalls_are_events_too(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    @twenty_jobs.job(queue=Q, name="Flaky", registry=registry)
    async def flaky(data: Any, ctx: twenty_jobs.JobContext) -> None:
        await ctx.update_progress(ctx.attempt * 10)
        if ctx.attempt < 2 or data.get("always"):
            raise ValueError(f"attempt {ctx.attempt}")

    once = await producer.add(Q, "Flaky", {}, retry_limit=1)
    always = await producer.add(Q, "Flaky", {"always": True})
    # A job whose worker died while running it: active, no lock, a stalled-check candidate.
    dead = await producer.add(Q, "Flaky", {"i": "dead"}, retry_limit=1)
    key = f"{prefix}:{Q}"
    assert await redis.zrem(f"{key}:prioritized", str(dead)) == 1
    await redis.lpush(f"{key}:active", str(dead))
    await redis.sadd(f"{key}:stalled", str(dead))
    events, seen = listener()
    assert await burst(prefix, registry, observers=[events], max_stalled_count=5) == 0
    assert [e.job_id for e in seen["stalled"]] == [dead]
    assert [(e.job_id, str(e.error)) for e in seen["retried"] if e.job_id == once] == [(once, "attempt 1")]
    assert [e.job_id for e in seen["failed"]] == [always]
    assert seen["failed"][0].job is not None and seen["failed"][0].job.failed_reason == "attempt 1"
    assert sorted(e.job_id for e in seen["completed"]) == sorted([once, dead])
    assert [(e.job_id, e.progress) for e in seen["progress"] if e.job_id == once] == [(once, 10), (once, 20)]


async def test_the_workers_remove_on_complete_applies_to_node_jobs_that_carry_none(
    registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    # A Node app's `new Worker(queue, fn, {removeOnComplete: {count: 2}})`: its jobs carry no
    # removeOnComplete of their own, so the worker's applies; a job's own option still wins.
    ran: list[str] = []

    @twenty_jobs.job(queue=CUSTOM, name="R", registry=registry)
    async def r(data: Any, ctx: twenty_jobs.JobContext) -> None:
        ran.append(ctx.job_id)

    ids = [(await arun_fixture("add-raw", prefix=prefix, queue=CUSTOM, name="R", data={"i": i}, opts={}))["id"]
           for i in range(4)]
    own = (await arun_fixture("add-raw", prefix=prefix, queue=CUSTOM, name="R", data={}, opts={
        "removeOnComplete": False}))["id"]
    settings = {CUSTOM: QueueSettings(remove_on_complete={"count": 2})}
    assert await burst(prefix, registry, [CUSTOM], concurrency=1, queue_settings=settings) == 0
    assert ran == [*ids, own]
    completed = await redis.zrange(f"{prefix}:{CUSTOM}:completed", 0, -1)
    assert sorted(completed) == sorted([*ids[-2:], own])
    for job_id in ids[:2]:  # trimmed by the worker's retention: hash and all
        assert await redis.exists(f"{prefix}:{CUSTOM}:{job_id}") == 0


async def test_a_custom_backoff_strategy_is_found_by_the_jobs_backoff_type(
    registry: Registry, prefix: str, redis: aioredis.Redis, redis_url: str
) -> None:
    attempts: list[int] = []
    asked: list[tuple[int, str, str]] = []

    @twenty_jobs.job(queue=CUSTOM, name="B", registry=registry)
    async def b(data: Any, ctx: twenty_jobs.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("again")

    def linear(attempt: int, kind: str, error: BaseException, job: JobRecord) -> int:
        asked.append((attempt, kind, str(error)))
        return 50 * attempt

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        added = await add_jobs(client, QueueKeys(prefix, CUSTOM), [
            NewJob("B", {}, {"attempts": 5, "backoff": {"type": "linear", "delay": 1}})])
    finally:
        await client.aclose()
    settings = {CUSTOM: QueueSettings(backoff_strategies={"linear": linear})}
    assert await burst(prefix, registry, [CUSTOM], queue_settings=settings) == 0
    assert attempts == [1, 2, 3]
    assert asked == [(1, "linear", "again"), (2, "linear", "again")]
    assert await redis.zscore(f"{prefix}:{CUSTOM}:completed", added.ids[0]) is not None


async def test_lifecycle_hooks_share_resources_with_handlers_through_the_worker_context(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    calls: list[str] = []

    @registry.on_startup
    async def open_pool(worker: WorkerContext) -> None:
        calls.append(f"startup {worker.queues}")
        worker.resources["pool"] = ["connection"]

    @registry.on_shutdown
    async def close_pool(worker: WorkerContext) -> None:
        calls.append(f"shutdown {worker.resource('pool', list)}")

    async def legacy() -> None:
        calls.append("legacy process hook")

    hooks.on_shutdown(legacy)

    @twenty_jobs.job(queue=Q, name="H", registry=registry)
    async def h(data: Any, ctx: twenty_jobs.JobContext) -> None:
        calls.append(f"job sees {ctx.worker.resource('pool', list)}")
        with pytest.raises(LookupError, match="on_startup"):
            ctx.worker.resource("missing", dict)

    await producer.add(Q, "H", {})
    try:
        assert await burst(prefix, registry) == 0
    finally:
        hooks._shutdown_hooks.remove(legacy)  # the process-wide list: leave it as found
    assert calls == [f"startup ['{Q}']", "job sees ['connection']", "shutdown ['connection']",
                     "legacy process hook"]


async def test_a_failing_startup_hook_stops_the_start_with_one_clear_error(registry: Registry, prefix: str) -> None:
    @twenty_jobs.job(queue=Q, name="H", registry=registry)
    async def h(data: Any, ctx: Any) -> None: ...

    async def broken(worker: WorkerContext) -> None:
        raise OSError("database unreachable")

    with pytest.raises(StartupError, match="startup hook failed: OSError: database unreachable"):
        await run_worker(worker_config(prefix, [Q], burst=True, on_startup=[broken]), registry)


async def test_handler_failures_are_stored_in_nodes_shape_with_the_handlers_frames_only(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    def deeper() -> None:
        raise KeyError("missing thing")

    @twenty_jobs.job(queue=Q, name="F", registry=registry)
    async def f(data: Any, ctx: Any) -> None:
        deeper()

    job_id = await producer.add(Q, "F", {})
    assert await burst(prefix, registry) == 0
    stored = await redis.hgetall(f"{prefix}:{Q}:{job_id}")
    assert stored["failedReason"] == "'missing thing'"
    (entry,) = json.loads(stored["stacktrace"])
    lines = entry.split("\n")
    assert lines[0] == "KeyError: 'missing thing'"
    assert lines[1].endswith(", in f") and lines[3].endswith(", in deeper")
    assert "twenty_jobs" not in entry


async def test_the_jobs_a_queue_worker_runs_are_visible_while_they_run(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    release = asyncio.Event()

    @twenty_jobs.job(queue=Q, name="Slow", registry=registry)
    async def slow(data: Any, ctx: Any) -> None:
        await release.wait()

    running = await start_worker([Q], concurrency=3)
    for _ in range(3):
        await producer.add(Q, "Slow", {})
    await wait_until(lambda: len(running.worker.workers[0].active) == 3, timeout=5)
    release.set()
    await wait_until(lambda: not running.worker.workers[0].active, timeout=5)


async def test_the_limiter_spaces_job_starts_by_its_ttl_not_by_drain_delay(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    # The port's limiter waits drainDelay (5 s) instead of the limit's TTL (docs/traps.md).
    starts: list[float] = []

    @twenty_jobs.job(queue=Q, name="L", registry=registry)
    async def limited(data: Any, ctx: Any) -> None:
        starts.append(asyncio.get_running_loop().time())

    await producer.add_bulk(Q, "L", [{} for _ in range(6)])
    settings = {Q: QueueSettings(limiter=Limiter(max=2, duration_ms=300))}
    assert await burst(prefix, registry, concurrency=4, queue_settings=settings) == 0
    assert len(starts) == 6
    # At most 2 starts per 300 ms window: any 3 starts span a window (a little clock slack).
    assert all(starts[i + 2] - starts[i] >= 0.25 for i in range(len(starts) - 2)), starts
    assert starts[-1] - starts[0] < 3.0  # three windows, not three drainDelays
