"""The rate limiter shared with Node: BullMQ's `limiter {max, duration}` over every worker of a
queue, Node and Python; waking when the limit's TTL ends (the bare port waits drainDelay); and
the manual limit (`ctx.rate_limit(ms)` + `RateLimitError`) that Node's limiter honours too."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import NodeWorker
from twenty_jobs.runtime.config import QueueSettings
from twenty_jobs.runtime.events import EventListener, JobEvent
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry

from .anyapp_handlers import LIMITED
from .conftest import REDIS_URL, wait_until
from .test_cli import cli
from .test_worker import burst

Q = "anyapp-rate"


def now_ms() -> float:
    return time.time() * 1000


def bursts(starts_ms: list[float], duration_ms: int) -> list[list[float]]:
    """Job starts grouped into the limiter's windows. A window's starts come together (the
    workers wait out the limit, then race for the next window's jobs), so a gap of more than
    half the duration separates two windows; a start delayed by less than that stays in its own."""
    groups: list[list[float]] = []
    for start in sorted(starts_ms):
        if groups and start - groups[-1][-1] <= duration_ms / 2:
            groups[-1].append(start)
        else:
            groups.append([start])
    return groups


async def test_a_python_worker_keeps_the_limit_and_wakes_when_its_ttl_ends(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    starts: list[float] = []

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: Any, ctx: Any) -> None:
        starts.append(now_ms())

    await producer.add_bulk(Q, "N", [{"i": i} for i in range(20)])
    settings = {Q: QueueSettings(limiter=twenty_jobs.Limiter(5, 1000))}
    began = time.monotonic()
    assert await burst(prefix, registry, [Q], concurrency=5, queue_settings=settings, drain_delay_s=5.0) == 0
    elapsed = time.monotonic() - began
    windows = bursts(starts, 1000)
    assert len(starts) == 20
    assert [len(w) for w in windows] == [5, 5, 5, 5]
    # Four windows take about 3 s. The bare port waited drainDelay (5 s) after each: over 15 s.
    assert elapsed < 9, f"took {elapsed:.1f} s: the worker idled instead of waking at the limit's end"


async def test_node_and_python_workers_share_one_limit(
    producer: Producer, registry: Registry, prefix: str, start_worker: Any
) -> None:
    python_starts: list[float] = []

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: Any, ctx: Any) -> None:
        python_starts.append(now_ms())

    limit, duration = 5, 2000
    settings = {Q: QueueSettings(limiter=twenty_jobs.Limiter(limit, duration))}
    await start_worker([Q], concurrency=limit, queue_settings=settings)
    async with NodeWorker(Q, prefix=prefix, concurrency=limit, limiter={"max": limit, "duration": duration}) as node:
        await producer.add_bulk(Q, "N", [{"i": i} for i in range(25)])
        await wait_until(lambda: len(python_starts) + len(node.records()) >= 25, timeout=30)
        await asyncio.sleep(0.3)  # nothing more may start
        node_starts = [float(r["startedAt"]) for r in node.records()]
    assert len(python_starts) + len(node_starts) == 25
    windows = bursts([*python_starts, *node_starts], duration)
    assert max(len(w) for w in windows) <= limit, [len(w) for w in windows]
    assert len(windows) >= 5
    assert python_starts and node_starts, "both workers take jobs"


@pytest.mark.parametrize("limiter", [None, twenty_jobs.Limiter(100, 1000)], ids=["no-limiter", "limiter"])
async def test_rate_limit_error_puts_the_job_back_and_the_worker_waits_the_limit_out(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, limiter: twenty_jobs.Limiter | None
) -> None:
    starts: list[tuple[str, str, int, float]] = []
    limited_at: list[float] = []

    @twenty_jobs.job(queue=Q, name="T", registry=registry)
    async def t(data: Any, ctx: twenty_jobs.JobContext) -> str:
        starts.append(("T", ctx.job_id, ctx.attempt, now_ms()))
        if not limited_at:
            await asyncio.sleep(0.3)  # the other slots have started their jobs
            limited_at.append(now_ms())
            await ctx.rate_limit(1500)
            raise twenty_jobs.RateLimitError()
        return "done"

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: Any, ctx: twenty_jobs.JobContext) -> None:
        starts.append(("N", ctx.job_id, ctx.attempt, now_ms()))
        await asyncio.sleep(0.6)

    limited = await producer.add(Q, "T", {})
    await producer.add_bulk(Q, "N", [{"i": i} for i in range(5)])
    events = EventListener()
    seen: list[JobEvent] = []
    events.on("rate_limited", seen.append)
    settings = {Q: QueueSettings(limiter=limiter)}
    assert await burst(prefix, registry, [Q], concurrency=3, queue_settings=settings, observers=[events]) == 0
    (t0,) = limited_at
    # No job starts on this worker while the limit lasts, whether or not it has a limiter.
    later = [s for s in starts if s[3] > t0]
    assert later and all(s[3] >= t0 + 1400 for s in later), [(s[0], round(s[3] - t0)) for s in later]
    assert [(s[0], s[2]) for s in starts if s[1] == limited] == [("T", 1), ("T", 1)]  # no attempt used
    assert [e.job_id for e in seen] == [limited]
    stored = await redis.hgetall(f"{prefix}:{Q}:{limited}")
    assert stored["returnvalue"] == '"done"' and stored["atm"] == "1" and "failedReason" not in stored


async def test_a_limit_set_from_python_holds_for_a_node_worker(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, start_worker: Any
) -> None:
    limited_at: list[float] = []

    @twenty_jobs.job(queue=Q, name="T", registry=registry)
    async def t(data: Any, ctx: twenty_jobs.JobContext) -> None:
        limited_at.append(now_ms())
        await ctx.rate_limit(3000)
        raise twenty_jobs.RateLimitError()

    python = await start_worker([Q])
    job_id = await producer.add(Q, "T", {})
    await wait_until(lambda: limited_at)
    await wait_until(lambda: redis.lrange(f"{prefix}:{Q}:wait", 0, -1))  # back in wait, no attempt used
    assert await python.stop() == 0
    assert await redis.get(f"{prefix}:{Q}:limiter") == str(2**53 - 1)  # Node's MAX_SAFE_INTEGER
    async with NodeWorker(Q, prefix=prefix, limiter={"max": 10, "duration": 1000}, max_jobs=1) as node:
        await wait_until(lambda: node.records(), timeout=20)
        (record,) = node.records()
    assert record["id"] == job_id and record["attemptsMade"] == 0
    # Node started it once Python's 3 s limit had run out (it is ready well before).
    assert record["startedAt"] >= limited_at[0] + 2500


async def test_work_limit_flag_limits_every_worker_of_the_queue(prefix: str, redis: aioredis.Redis) -> None:
    marker = f"{prefix}:starts"
    async with Producer(REDIS_URL, prefix=prefix, allow_any_queue=True) as producer:
        await producer.add_bulk(LIMITED, "Stamp", [{"marker": marker} for _ in range(6)])
    out = await asyncio.to_thread(
        cli, "work", "--import", "tests.anyapp_handlers", "--queue", LIMITED, "--no-builtin-jobs", "--burst",
        "--concurrency", "4", "--limit", f"{LIMITED}=2/1000", "--prefix", prefix,
    )
    assert out.returncode == 0, out.stderr
    starts = [float(s) for s in await redis.lrange(marker, 0, -1)]
    assert [len(w) for w in bursts(starts, 1000)] == [2, 2, 2]


@pytest.mark.parametrize(("args", "message"), [
    (["--limit", "5"], "--limit takes MAX/DURATION_MS"),
    (["--limit", "0/1000"], "MAX must be 1 to"),
    (["--limit", "5/0"], "DURATION_MS must be 1 to"),
    (["--limit", "other-queue=5/1000"], "does not serve queue 'other-queue'"),
    (["--limit", "5/1000", "--limit", "6/1000"], "without a queue is given twice"),
])
def test_bad_limit_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = cli("work", "--import", "tests.anyapp_handlers", "--queue", LIMITED, "--no-builtin-jobs", *args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


async def test_a_rate_limit_error_with_no_limit_in_force_waits_a_second_instead_of_looping(
    producer: Producer, registry: Registry, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []

    @twenty_jobs.job(queue=Q, name="T", registry=registry)
    async def t(data: Any, ctx: twenty_jobs.JobContext) -> None:
        starts.append(now_ms())
        if len(starts) == 1:
            raise twenty_jobs.RateLimitError()  # no ctx.rate_limit(ms) first

    await producer.add(Q, "T", {})
    assert await burst(prefix, registry, [Q]) == 0
    assert len(starts) == 2 and starts[1] - starts[0] >= 900
    assert "raised RateLimitError with no rate limit in force" in caplog.text
