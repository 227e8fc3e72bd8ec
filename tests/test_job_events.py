"""Every job's events reach code that embeds the worker, at any concurrency and however the job
was fetched: started, progress (BullMQ's updateProgress, which Node's QueueEvents and bull-board
read from the events stream), completed, failed, retried, rate_limited and stalled."""

from __future__ import annotations

import collections
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry

from .test_worker import burst

Q = "anyapp-events"
PER_KIND = 30

# What each kind of job does, and the events it must produce, in counts.
EXPECTED: dict[str, collections.Counter[str]] = {
    "ok": collections.Counter(started=1, progress=2, completed=1),
    "blocking": collections.Counter(started=1, progress=1, completed=1),
    "flaky": collections.Counter(started=2, retried=1, completed=1),
    "bad": collections.Counter(started=1, failed=1),
    "limited": collections.Counter(started=2, rate_limited=1, completed=1),
    "stalled": collections.Counter(stalled=1, started=1, completed=1),
}


@pytest.mark.parametrize("concurrency", [1, 10, 100])
async def test_every_event_of_every_job_is_heard_once(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, concurrency: int
) -> None:
    @twenty_jobs.job(queue=Q, name="ok", registry=registry)
    async def ok(data: Any, ctx: twenty_jobs.JobContext) -> None:
        await ctx.update_progress(50)
        await ctx.update_progress({"done": True})

    @twenty_jobs.job(queue=Q, name="blocking", registry=registry)
    def blocking(data: Any, ctx: twenty_jobs.BlockingJobContext) -> None:
        ctx.update_progress(100)

    @twenty_jobs.job(queue=Q, name="flaky", registry=registry)
    async def flaky(data: Any, ctx: twenty_jobs.JobContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt")

    @twenty_jobs.job(queue=Q, name="bad", registry=registry)
    async def bad(data: Any, ctx: twenty_jobs.JobContext) -> None:
        raise ValueError("always")

    limited_once: set[str] = set()

    @twenty_jobs.job(queue=Q, name="limited", registry=registry)
    async def limited(data: Any, ctx: twenty_jobs.JobContext) -> None:
        if ctx.job_id not in limited_once:
            limited_once.add(ctx.job_id)
            await ctx.rate_limit(50)
            raise twenty_jobs.RateLimitError()

    @twenty_jobs.job(queue=Q, name="stalled", registry=registry)
    async def stalled(data: Any, ctx: twenty_jobs.JobContext) -> None: ...

    kind_of: dict[str, str] = {}
    for kind in EXPECTED:
        ids = await producer.add_bulk(Q, kind, [{"i": i} for i in range(PER_KIND)],
                                      retry_limit=1 if kind == "flaky" else 0)
        kind_of.update(dict.fromkeys(ids, kind))
    # The stalled ones: active with no lock (their worker died), candidates of the stalled check.
    stalled_ids = [job_id for job_id, kind in kind_of.items() if kind == "stalled"]
    for job_id in stalled_ids:
        assert await redis.lrem(f"{prefix}:{Q}:wait", 1, job_id) == 1
    await redis.lpush(f"{prefix}:{Q}:active", *stalled_ids)
    await redis.sadd(f"{prefix}:{Q}:stalled", *stalled_ids)

    heard: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    events = twenty_jobs.EventListener()
    for name in ("started", "progress", "completed", "failed", "retried", "rate_limited", "error", "stalled"):
        events.on(name, lambda e: heard[e.job_id].update([e.name]))  # type: ignore[arg-type]
    assert await burst(prefix, registry, [Q], concurrency=concurrency, observers=[events]) == 0

    assert set(heard) == set(kind_of), "a job with no event at all"
    wrong = {job_id: (kind_of[job_id], dict(heard[job_id])) for job_id in kind_of
             if heard[job_id] != EXPECTED[kind_of[job_id]]}
    assert wrong == {}
    # Progress went through BullMQ's script: one `progress` entry per update in the events stream.
    stream = await redis.xrange(f"{prefix}:{Q}:events")
    assert sum(1 for _, fields in stream if fields.get("event") == "progress") == PER_KIND * 3
