"""The worker against the real local Redis: routing, order, timing, retries, failures, crons."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

import twenty_jobs
from twenty_jobs.errors import ConfigError, RetryJob
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker, run_worker
from twenty_jobs.wire.keys import twenty_jobs_client_name

from .conftest import wait_until, worker_config

Q = "workspace-queue"


def now_ms() -> float:
    return time.time() * 1000


async def burst(prefix: str, registry: Registry, queues: list[str] | None = None, **kw: Any) -> int:
    return await asyncio.wait_for(
        run_worker(worker_config(prefix, queues or [Q], burst=True, **kw), registry), 60
    )


async def test_python_enqueue_is_processed_by_python_worker_with_context(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    seen: list[dict[str, Any]] = []

    @twenty_jobs.job(queue=Q, name="SomeJob", registry=registry)
    async def some_job(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> dict[str, Any]:
        seen.append({"data": data, "id": ctx.job_id, "name": ctx.name, "queue": ctx.queue,
                     "ws": ctx.workspace_id, "retry_limit": ctx.retry_limit, "attempt": ctx.attempt})
        await ctx.update_progress(50)
        await ctx.log("half way")
        await ctx.update_data({**data, "touched": True})
        return {"sum": sum(data["n"])}

    job_id = await producer.add(Q, "SomeJob", {"n": [1, 2, 3], "workspaceId": "ws-1"}, retry_limit=2)
    assert await burst(prefix, registry) == 0
    assert seen == [{"data": {"n": [1, 2, 3], "workspaceId": "ws-1"}, "id": job_id, "name": "SomeJob",
                     "queue": Q, "ws": "ws-1", "retry_limit": 2, "attempt": 1}]
    stored = await redis.hgetall(f"{prefix}:{Q}:{job_id}")
    assert json.loads(stored["returnvalue"]) == {"sum": 6}
    assert stored["progress"] == "50"
    assert json.loads(stored["data"])["touched"] is True
    assert await redis.lrange(f"{prefix}:{Q}:{job_id}:logs", 0, -1) == ["half way"]
    assert await redis.zscore(f"{prefix}:{Q}:completed", str(job_id)) is not None


async def test_jobs_run_in_priority_order(producer: Producer, registry: Registry, prefix: str) -> None:
    order: list[int] = []

    @twenty_jobs.job(queue=Q, name="P", registry=registry)
    async def p(data: dict[str, int], ctx: Any) -> None:
        order.append(data["p"])

    for prio in (5, 1, 3, 2, 4):
        await producer.add(Q, "P", {"p": prio}, priority=prio)
    assert await burst(prefix, registry, concurrency=1) == 0
    assert order == [1, 2, 3, 4, 5]


async def test_delayed_job_starts_within_150ms_of_due_time(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    started: list[float] = []

    @twenty_jobs.job(queue=Q, name="Later", registry=registry)
    async def later(data: Any, ctx: twenty_jobs.JobContext) -> None:
        started.append(now_ms() - (ctx.timestamp + 700))

    await start_worker([Q])
    await producer.add(Q, "Later", {}, delay=700)
    await wait_until(lambda: started, timeout=5)
    # The bare port rounds the blocking timeout up to whole seconds: ~300 ms late here.
    assert -5 <= started[0] < 150, f"delayed job started {started[0]:.0f} ms after its due time"


async def test_idle_worker_picks_up_a_new_job_within_100ms_after_long_idleness(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    latency: list[float] = []
    enqueued: list[float] = []

    @twenty_jobs.job(queue=Q, name="Ping", registry=registry)
    async def ping(data: Any, ctx: Any) -> None:
        latency.append(time.perf_counter() - enqueued[0])

    running = await start_worker([Q])
    blocking = running.worker.workers[0].blocking
    # redis-py 8 would default this to 5 s and cut the 5 s BZPOPMIN (docs/traps.md F1).
    assert blocking.connection_pool.connection_kwargs.get("socket_timeout") is None
    # Idle for longer than BullMQ's drainDelay (5 s) and redis-py 8's socket timeout.
    await asyncio.sleep(6.5)
    enqueued.append(time.perf_counter())
    await producer.add(Q, "Ping", {})
    await wait_until(lambda: latency, timeout=10)
    assert latency[0] < 0.1, f"idle pickup took {latency[0] * 1000:.0f} ms"


async def test_retries_follow_fixed_backoff_and_count_attempts(
    producer: Producer, registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str
) -> None:
    attempts: list[tuple[int, float]] = []

    @twenty_jobs.job(queue=Q, name="Flaky", registry=registry)
    async def flaky(data: Any, ctx: twenty_jobs.JobContext) -> str:
        attempts.append((ctx.attempts_made, now_ms()))
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return "ok"

    await start_worker([Q])
    job_id = await producer.add(Q, "Flaky", {}, retry_limit=3, backoff=twenty_jobs.Backoff("fixed", 300))
    await wait_until(lambda: len(attempts) == 3, timeout=10)
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:completed", str(job_id)), timeout=5)
    assert [a for a, _ in attempts] == [0, 1, 2]
    gaps = [attempts[i + 1][1] - attempts[i][1] for i in range(2)]
    for gap in gaps:
        assert 290 <= gap < 300 + 150, f"backoff gap {gap:.0f} ms, expected 300 ms"
    stored = await redis.hgetall(f"{prefix}:{Q}:{job_id}")
    assert stored["atm"] == "3"
    assert len(json.loads(stored["stacktrace"])) == 2


async def test_exponential_backoff_with_jitter_stays_within_nodes_range(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    times: list[float] = []

    @twenty_jobs.job(queue=Q, name="Jit", registry=registry)
    async def jit(data: Any, ctx: twenty_jobs.JobContext) -> None:
        times.append(now_ms())
        if ctx.attempt < 3:
            raise RuntimeError("again")

    await start_worker([Q])
    await producer.add(Q, "Jit", {}, retry_limit=2, backoff=twenty_jobs.Backoff("exponential", 400, 0.5))
    await wait_until(lambda: len(times) == 3, timeout=10)
    # Node: attempt n waits uniformly in [d*(1-j), d] with d = 400 * 2^(n-1).
    first, second = times[1] - times[0], times[2] - times[1]
    assert 195 <= first < 400 + 150
    assert 395 <= second < 800 + 150


async def test_retry_job_error_sets_the_delay_when_twenty_gave_no_backoff(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    times: list[float] = []

    @twenty_jobs.job(queue=Q, name="Later", registry=registry)
    async def later(data: Any, ctx: twenty_jobs.JobContext) -> None:
        times.append(now_ms())
        if ctx.attempt == 1:
            raise RetryJob("endpoint timed out", delay_ms=400)

    await start_worker([Q])
    await producer.add(Q, "Later", {}, retry_limit=1)
    await wait_until(lambda: len(times) == 2, timeout=10)
    assert 390 <= times[1] - times[0] < 400 + 150


async def test_unknown_job_name_fails_with_a_reason_naming_job_and_queue(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    @twenty_jobs.job(queue=Q, name="Known", registry=registry)
    async def known(data: Any, ctx: Any) -> None:
        return None

    job_id = await producer.add(Q, "Mystery", {"x": 1}, retry_limit=3)
    assert await burst(prefix, registry) == 0
    stored = await redis.hgetall(f"{prefix}:{Q}:{job_id}")
    assert await redis.zscore(f"{prefix}:{Q}:failed", str(job_id)) is not None
    assert "'Mystery'" in stored["failedReason"] and f"'{Q}'" in stored["failedReason"]
    # Permanent: no retries burned on a name nobody here can run.
    assert stored["atm"] == "1"


class Payload(BaseModel):
    workspaceId: str
    count: int


async def test_invalid_data_fails_the_job_with_the_validation_message_and_no_retry(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    got: list[Payload] = []

    @twenty_jobs.job(queue=Q, name="Typed", registry=registry)
    async def typed(data: Payload, ctx: Any) -> None:
        got.append(data)

    good = await producer.add(Q, "Typed", {"workspaceId": "w", "count": 2})
    bad = await producer.add(Q, "Typed", {"workspaceId": "w", "count": "many"}, retry_limit=3)
    assert await burst(prefix, registry) == 0
    assert got == [Payload(workspaceId="w", count=2)]
    reason = await redis.hget(f"{prefix}:{Q}:{bad}", "failedReason")
    assert reason is not None and "count" in reason and "invalid data for job 'Typed'" in reason
    assert await redis.hget(f"{prefix}:{Q}:{bad}", "atm") == "1"
    assert await redis.zscore(f"{prefix}:{Q}:completed", str(good)) is not None


async def test_unparseable_stored_data_fails_the_job_and_the_worker_keeps_going(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    done: list[int] = []

    @twenty_jobs.job(queue=Q, name="J", registry=registry)
    async def j(data: dict[str, int], ctx: Any) -> None:
        done.append(data["i"])

    broken = await producer.add(Q, "J", {"i": 0})
    await redis.hset(f"{prefix}:{Q}:{broken}", "data", "{not json")
    await producer.add(Q, "J", {"i": 1})
    assert await burst(prefix, registry) == 0
    assert done == [1]
    reason = await redis.hget(f"{prefix}:{Q}:{broken}", "failedReason")
    assert reason is not None and f"job {broken} ('J')" in reason and "field 'data' is not valid JSON" in reason
    assert await redis.llen(f"{prefix}:{Q}:active") == 0


async def test_non_json_return_value_fails_clearly(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    @twenty_jobs.job(queue=Q, name="R", registry=registry)
    async def r(data: Any, ctx: Any) -> Any:
        return {"when": object()}

    job_id = await producer.add(Q, "R", {})
    assert await burst(prefix, registry) == 0
    reason = await redis.hget(f"{prefix}:{Q}:{job_id}", "failedReason")
    assert reason is not None and "not JSON" in reason


async def test_dedupe_skips_a_job_whose_id_is_already_waiting_but_not_once_it_ran(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    ran: list[str] = []

    @twenty_jobs.job(queue=Q, name="Sync", registry=registry)
    async def sync(data: Any, ctx: twenty_jobs.JobContext) -> None:
        ran.append(ctx.job_id)

    first = await producer.add(Q, "Sync", {}, id="sync-ws-1")
    assert first is not None and first.startswith("sync-ws-1-")
    assert await producer.add(Q, "Sync", {}, id="sync-ws-1") is None
    assert await producer.add(Q, "Sync", {}, id="sync-ws-1", allow_duplicate=True) is not None
    other = await producer.add(Q, "Sync", {}, id="sync-ws-2")
    assert other is not None
    assert await burst(prefix, registry) == 0
    assert len(ran) == 3
    again = await producer.add(Q, "Sync", {}, id="sync-ws-1")
    assert again is not None and again != first


async def test_bulk_add_uses_item_ids_verbatim_and_drops_items_already_waiting(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    ran: list[Any] = []

    @twenty_jobs.job(queue=Q, name="B", registry=registry)
    async def b(data: Any, ctx: twenty_jobs.JobContext) -> None:
        ran.append((ctx.job_id, data))

    await producer.add(Q, "B", {"i": "pre"}, id="ws-1.a")
    ids = await producer.add_bulk(
        Q, "B", [twenty_jobs.BulkItem({"i": 1}, "ws-1.a"), twenty_jobs.BulkItem({"i": 2}, "ws-1.b"), {"i": 3}]
    )
    assert len(ids) == 2 and ids[0] == "ws-1.b"
    assert await burst(prefix, registry) == 0
    assert sorted(str(d["i"]) for _, d in ran) == ["2", "3", "pre"]


async def test_cron_scheduler_iterations_run_and_keep_going(
    producer: Producer, registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str
) -> None:
    runs: list[tuple[str, Any]] = []

    @twenty_jobs.job(queue="cron-queue", name="TickJob", registry=registry)
    async def tick(data: Any, ctx: twenty_jobs.JobContext) -> None:
        runs.append((ctx.job_id, data))

    scheduler_id = await producer.add_cron("cron-queue", "TickJob", every_ms=300)
    assert scheduler_id == "TickJob"
    await start_worker(["cron-queue"])
    await wait_until(lambda: len(runs) >= 4, timeout=10)
    assert all(job_id.startswith("repeat:TickJob:") for job_id, _ in runs)
    assert all(data == {} for _, data in runs)
    assert len({job_id for job_id, _ in runs}) == len(runs)
    assert int(await redis.hget(f"{prefix}:cron-queue:repeat:TickJob", "ic") or 0) >= 4
    assert await producer.remove_cron("cron-queue", "TickJob") is True
    assert await redis.zscore(f"{prefix}:cron-queue:repeat", "TickJob") is None


async def test_cron_with_pattern_and_job_id_uses_dotted_scheduler_id(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    sid = await producer.add_cron("cron-queue", "SyncJob", {"x": 1}, pattern="*/5 * * * *", job_id="ws-1")
    assert sid == "SyncJob.ws-1"
    next_millis = await redis.zscore(f"{prefix}:cron-queue:repeat", sid)
    assert next_millis is not None and int(next_millis) % 300_000 == 0
    with pytest.raises(ConfigError):
        await producer.add_cron("cron-queue", "Bad", pattern="not a cron")


async def test_burst_exits_0_when_empty_and_waits_for_delayed_jobs(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    ran: list[int] = []

    @twenty_jobs.job(queue=Q, name="D", registry=registry)
    async def d(data: dict[str, int], ctx: Any) -> None:
        ran.append(data["i"])

    await producer.add(Q, "D", {"i": 1})
    await producer.add(Q, "D", {"i": 2}, delay=400)
    assert await burst(prefix, registry) == 0
    assert sorted(ran) == [1, 2]


async def test_prefixes_isolate_workers(
    registry: Registry, redis_url: str, prefix: str
) -> None:
    from .conftest import delete_prefix

    ran: list[str] = []

    @twenty_jobs.job(queue=Q, name="Iso", registry=registry)
    async def iso(data: dict[str, str], ctx: Any) -> None:
        ran.append(data["p"])

    other = prefix + "-other"
    try:
        async with Producer(redis_url, prefix=prefix, registry=registry) as mine, \
                Producer(redis_url, prefix=other, registry=registry) as theirs:
            await mine.add(Q, "Iso", {"p": "mine"})
            await theirs.add(Q, "Iso", {"p": "theirs"})
            assert await burst(prefix, registry) == 0
            assert ran == ["mine"]
            assert await theirs.client.zcard(f"{other}:{Q}:prioritized") == 1
    finally:
        await delete_prefix(other)


async def test_blocking_connection_is_named_like_node_so_get_workers_counts_it(
    registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str
) -> None:
    @twenty_jobs.job(queue="email-queue", name="E", registry=registry)
    async def e(data: Any, ctx: Any) -> None:
        return None

    @twenty_jobs.job(queue=Q, name="W", registry=registry)
    async def w(data: Any, ctx: Any) -> None:
        return None

    await start_worker(["email-queue", Q])
    names = [c["name"] for c in await redis.client_list()]
    assert names.count(twenty_jobs_client_name(prefix, "email-queue")) == 1
    assert names.count(twenty_jobs_client_name(prefix, Q)) == 1


async def test_concurrency_runs_that_many_jobs_at_once(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    active = 0
    peak = 0

    @twenty_jobs.job(queue=Q, name="C", registry=registry)
    async def c(data: Any, ctx: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1

    await producer.add_bulk(Q, "C", [{} for _ in range(12)])
    assert await burst(prefix, registry, concurrency=4) == 0
    assert peak == 4


async def test_serving_a_queue_without_handlers_is_refused(registry: Registry, prefix: str) -> None:
    with pytest.raises(ConfigError, match="has no handlers"):
        await TwentyWorker(worker_config(prefix, ["email-queue"]), registry).start()


async def test_registering_a_generator_or_two_handlers_for_one_name_is_refused(registry: Registry) -> None:
    # A plain `def` is a blocking handler (tests/test_blocking_handlers.py); a generator is a mistake.
    def gen(data: Any, ctx: Any) -> Any:
        yield data

    with pytest.raises(ConfigError, match="generator"):
        twenty_jobs.job(queue=Q, name="S", registry=registry)(gen)

    async def one(data: Any, ctx: Any) -> None: ...
    async def two(data: Any, ctx: Any) -> None: ...

    twenty_jobs.job(queue=Q, name="Dup", registry=registry)(one)
    with pytest.raises(ConfigError, match="two handlers"):
        twenty_jobs.job(queue=Q, name="Dup", registry=registry)(two)


async def test_worker_writes_bullmq_metrics_series_like_twentys_worker_option(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    @twenty_jobs.job(queue=Q, name="M", registry=registry)
    async def m(data: dict[str, bool], ctx: Any) -> None:
        if data["fail"]:
            raise RuntimeError("no")

    for fail in (False, False, True):
        await producer.add(Q, "M", {"fail": fail})
    assert await burst(prefix, registry) == 0
    assert await redis.hget(f"{prefix}:{Q}:metrics:completed", "count") == "2"
    assert await redis.hget(f"{prefix}:{Q}:metrics:failed", "count") == "1"


async def test_shutdown_deadline_aborts_the_handlers_signal(
    producer: Producer, registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str
) -> None:
    observed: list[str] = []
    started = asyncio.Event()

    @twenty_jobs.job(queue=Q, name="Long", registry=registry)
    async def long(data: Any, ctx: twenty_jobs.JobContext) -> None:
        started.set()
        assert ctx.signal is not None
        try:
            await asyncio.wait_for(ctx.signal.wait(), 30)
            observed.append(f"aborted: {ctx.signal.reason}")
        except asyncio.CancelledError:
            observed.append(f"cancelled, aborted={ctx.aborted}")
            raise

    running = await start_worker([Q], grace_s=0.5)
    job_id = await producer.add(Q, "Long", {})
    await asyncio.wait_for(started.wait(), 10)
    assert await running.stop() == 1
    assert observed[0] in ("aborted: worker shutdown deadline", "cancelled, aborted=True")
    # Cut short, never deleted: left active for stall recovery.
    assert job_id in await redis.lrange(f"{prefix}:{Q}:active", 0, -1)
