"""The worker heartbeat and every verdict of `twenty-jobs check`, each in both states, against the
real local Redis. Checks run in-process (evaluate_health) for speed; test_cli_ops.py drives the
same verdicts through the command line."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import RunningWorker, wait_until
from twenty_jobs.observability.heartbeat import Heartbeat, HeartbeatRecord, now_ms, read_heartbeats
from twenty_jobs.ops.check import HealthReport, evaluate_health
from twenty_jobs.ops.snapshot import count_workers
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job
from twenty_jobs.wire.keys import heartbeat_key, worker_client_name

QUEUE = "email-queue"
StartWorker = Callable[..., Awaitable[RunningWorker]]


def fast_heartbeat(**kw: Any) -> Heartbeat:
    return Heartbeat(interval_s=kw.pop("interval_s", 0.2), ttl_s=kw.pop("ttl_s", 3.0), **kw)


def codes(report: HealthReport) -> list[str]:
    return [p.code for p in report.problems]


def handle(registry: Registry, queue: str = QUEUE, name: str = "EmailSenderJob") -> list[Any]:
    seen: list[Any] = []

    @job(queue, name, registry=registry)
    async def handler(data: Any, ctx: JobContext) -> None:
        seen.append(data)

    return seen


async def write_heartbeat(redis: aioredis.Redis, prefix: str, record: HeartbeatRecord, ttl_ms: int = 30_000) -> None:
    await redis.set(heartbeat_key(prefix, record.queue, record.worker_id), record.to_json(), px=ttl_ms)


def record(queue: str = QUEUE, **kw: Any) -> HeartbeatRecord:
    at = kw.pop("at", now_ms())
    defaults: dict[str, Any] = dict(
        worker_id="other-host:1:abc", queue=queue, host="other-host", pid=1, version="0.1.0",
        started_at=at - 60_000, at=at, interval_ms=5000, queues=[queue], handlers=["EmailSenderJob"],
    )
    defaults.update(kw)
    return HeartbeatRecord(**defaults)


# -- heartbeat ---------------------------------------------------------------------------------


async def test_heartbeat_describes_each_served_queue_and_leaves_with_a_clean_stop(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    handle(registry)
    handle(registry, "webhook-queue", "CallWebhookJob")
    hb = fast_heartbeat()
    rw = await start_worker([QUEUE, "webhook-queue"], observers=[hb], services=[hb])
    await producer.add(QUEUE, "EmailSenderJob", {"to": "a@example.com"})

    async def counted() -> bool:
        records = {r.queue: r for r in await read_heartbeats(redis, prefix)}
        return QUEUE in records and records[QUEUE].completed == 1

    await wait_until(counted, timeout=10)
    records = {r.queue: r for r in await read_heartbeats(redis, prefix)}
    assert set(records) == {QUEUE, "webhook-queue"}
    email = records[QUEUE]
    assert email.worker_id == rw.worker.worker_id
    assert email.host == socket.gethostname()
    assert email.queues == [QUEUE, "webhook-queue"]
    assert email.handlers == ["EmailSenderJob"]
    assert email.last_completed_at is not None and email.failed == 0
    assert 0 < await redis.pttl(heartbeat_key(prefix, QUEUE, rw.worker.worker_id)) <= 3000
    # The gauges' counts come from the same round trip.
    assert set(hb.queue_stats()) == {QUEUE, "webhook-queue"}

    await rw.stop()
    assert await read_heartbeats(redis, prefix) == []


async def test_heartbeat_ttl_must_outlive_the_stale_threshold() -> None:
    try:
        Heartbeat(interval_s=5, ttl_s=10)
    except ValueError as exc:
        assert "must exceed" in str(exc)
    else:
        raise AssertionError("a TTL shorter than 3 intervals was accepted")


# -- check: healthy, and each problem -----------------------------------------------------------


async def test_a_worker_that_finishes_jobs_is_healthy(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    seen = handle(registry)
    hb = fast_heartbeat()
    await start_worker([QUEUE], observers=[hb], services=[hb])
    for i in range(3):
        await producer.add(QUEUE, "EmailSenderJob", {"i": i})
    await wait_until(lambda: len(seen) == 3)
    report = await evaluate_health(redis, prefix, queues=[QUEUE], stuck_after_s=1)
    assert report.healthy, report.problems
    (queue,) = report.queues
    assert queue.python_workers == 1 and queue.snapshot.workers == 1


async def test_a_served_queue_without_any_worker_is_unhealthy(redis: aioredis.Redis, prefix: str) -> None:
    report = await evaluate_health(redis, prefix, queues=[QUEUE])
    assert codes(report) == ["no_live_worker"]
    assert "email-queue: no live worker" in report.problems[0].message


async def test_waiting_jobs_with_no_consumer_at_all_are_unhealthy_and_a_consumer_fixes_it(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    # No heartbeat anywhere and no --queue: every Twenty queue is watched for orphaned jobs.
    await producer.add(QUEUE, "EmailSenderJob", {})
    await producer.add("billing-queue", "SomeBillingJob", {}, delay=60_000)  # not due yet: fine
    report = await evaluate_health(redis, prefix)
    assert codes(report) == ["no_consumer"]
    assert "email-queue: 1 job(s) ready (1 prioritized) and no worker, Node or Python" in report.problems[0].message

    seen = handle(registry)
    await start_worker([QUEUE], observers=[fast_heartbeat()])
    await wait_until(lambda: len(seen) == 1)
    assert (await evaluate_health(redis, prefix)).healthy


async def test_a_due_delayed_job_without_consumer_counts_as_ready(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add(QUEUE, "EmailSenderJob", {}, delay=50)
    await asyncio.sleep(0.1)
    report = await evaluate_health(redis, prefix)
    assert codes(report) == ["no_consumer"]
    assert "1 due delayed" in report.problems[0].message


async def test_a_stale_heartbeat_is_unhealthy_and_a_fresh_one_is_not(redis: aioredis.Redis, prefix: str) -> None:
    await write_heartbeat(redis, prefix, record(at=now_ms() - 20_000))  # 4 intervals of 5 s
    report = await evaluate_health(redis, prefix)
    assert "stale_heartbeat" in codes(report)
    stale = next(p for p in report.problems if p.code == "stale_heartbeat")
    assert stale.worker_id == "other-host:1:abc"
    assert "last wrote its heartbeat 20 s ago" in stale.message

    await write_heartbeat(redis, prefix, record())
    report = await evaluate_health(redis, prefix)
    assert "stale_heartbeat" not in codes(report)


async def test_a_live_worker_that_finishes_nothing_is_not_making_progress(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @job(QUEUE, "EmailSenderJob", registry=registry)
    async def hangs(data: Any, ctx: JobContext) -> None:
        started.set()
        await release.wait()

    hb = fast_heartbeat(stuck_after_s=1)
    await start_worker([QUEUE], observers=[hb], services=[hb])
    await producer.add(QUEUE, "EmailSenderJob", {"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await producer.add(QUEUE, "EmailSenderJob", {"n": 2})  # stuck behind the hung one
    assert (await evaluate_health(redis, prefix, queues=[QUEUE], stuck_after_s=1)).healthy

    assert hb.local_health().ok

    await asyncio.sleep(1.5)
    report = await evaluate_health(redis, prefix, queues=[QUEUE], stuck_after_s=1)
    assert codes(report) == ["no_progress"]
    assert "worker alive but not making progress" in report.problems[0].message
    # The worker process itself agrees (what /healthz serves).
    local = hb.local_health()
    assert not local.ok and "not making progress" in local.problems[0]

    release.set()
    await wait_until(lambda: hb.tallies[QUEUE].completed == 2)
    assert (await evaluate_health(redis, prefix, queues=[QUEUE], stuck_after_s=1)).healthy


async def test_a_heartbeat_without_a_fetching_connection_is_unhealthy(
    redis: aioredis.Redis, prefix: str, redis_url: str
) -> None:
    await write_heartbeat(redis, prefix, record())
    assert codes(await evaluate_health(redis, prefix)) == ["no_connection"]

    named = aioredis.Redis.from_url(redis_url, client_name=worker_client_name(prefix, QUEUE))
    try:
        await named.ping()
        assert (await evaluate_health(redis, prefix)).healthy
    finally:
        await named.aclose()


async def test_this_host_only_judges_workers_of_this_host(redis: aioredis.Redis, prefix: str) -> None:
    await write_heartbeat(redis, prefix, record(at=now_ms() - 20_000))  # stale, but on another host
    report = await evaluate_health(redis, prefix, host=socket.gethostname())
    assert codes(report) == ["no_live_worker"]
    assert "no twenty-jobs worker on host" in report.problems[0].message


async def test_paused_queue_with_jobs_is_a_warning_not_a_failure(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add(QUEUE, "EmailSenderJob", {})
    await redis.hset(f"{prefix}:{QUEUE}:meta", "paused", "1")
    report = await evaluate_health(redis, prefix)
    assert report.healthy
    assert [w.code for w in report.warnings] == ["queue_paused"]


def test_worker_connections_are_counted_the_way_node_getworkers_counts_them() -> None:
    base = worker_client_name("bull", QUEUE)
    names = [base, f"{base}:w:named", f"{base}x", "bull:email-queue", "", worker_client_name("bull", "other")]
    assert count_workers(names, "bull", QUEUE) == 2


async def test_local_health_reports_an_unreachable_redis() -> None:
    hb = fast_heartbeat()
    assert not hb.local_health().ok  # never wrote a heartbeat
    hb.last_ok_at = now_ms()
    assert hb.local_health().ok
    hb.last_ok_at = now_ms() - 5_000
    hb.last_error = "Connection refused"
    state = hb.local_health()
    assert not state.ok and "Connection refused" in state.problems[0]
