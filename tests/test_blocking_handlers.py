"""Blocking handlers: a plain `def` runs on a thread of the queue's pool (at most one per slot),
so lock renewal and the stalled check keep running beside CPU-bound work, and another worker
(Node here) never takes the job over; the abort signal and the job's actions reach the thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import NodeWorker, arun_fixture
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry

from .conftest import wait_until
from .test_worker import burst

Q = "anyapp-blocking"
LOCK_MS = 1000
BLOCK_S = 3.0  # three lock durations: an unrenewed lock is long gone, and the stall checkers run often


def spin(seconds: float) -> int:
    """CPU-bound work that holds the GIL for `seconds` (no sleeping)."""
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        sum(range(1000))
        rounds += 1
    return rounds


async def run_beside_node(prefix: str, producer: Producer, start_worker: Any, redis: aioredis.Redis) -> tuple[
        str, list[dict[str, Any]]]:
    """Python takes a job whose handler runs BLOCK_S; meanwhile a Node worker with the same lock
    and a fast stalled check serves the queue. Returns the job id and Node's started attempts."""
    await start_worker([Q], concurrency=1, lock_duration_ms=LOCK_MS, stalled_interval_ms=300)
    job_id = await producer.add(Q, "Crunch", {})
    await wait_until(lambda: redis.hexists(f"{prefix}:{Q}:{job_id}", "processedOn"))
    async with NodeWorker(Q, prefix=prefix, concurrency=1, lock_duration=LOCK_MS, stalled_interval=300,
                    max_stalled_count=5) as node:
        await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:completed", str(job_id)), timeout=20)
        await asyncio.sleep(0.5)  # a late double run would show up here
        records = node.records()
    return str(job_id), records


async def test_a_cpu_bound_def_handler_longer_than_its_lock_runs_once_beside_a_node_worker(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, start_worker: Any
) -> None:
    threads: list[str] = []

    @twenty_jobs.job(queue=Q, name="Crunch", registry=registry)
    def crunch(data: Any, ctx: twenty_jobs.BlockingJobContext) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"rounds": spin(BLOCK_S) > 0, "aborted": ctx.aborted}

    job_id, node_records = await run_beside_node(prefix, producer, start_worker, redis)
    assert node_records == []  # Node never ran it
    stored = await redis.hgetall(f"{prefix}:{Q}:{job_id}")
    assert json.loads(stored["returnvalue"]) == {"rounds": True, "aborted": False}
    assert stored["ats"] == "1" and stored.get("stc", "0") == "0"
    assert len(threads) == 1 and threads[0] != threading.main_thread().name


async def test_the_same_work_in_an_async_handler_blocks_the_loop_and_node_runs_the_job_again(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, start_worker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The hazard the thread pool removes (docs/any-bullmq-app.md, "Blocking handlers"): this test
    # is the proof that the one above would see a second run.
    @twenty_jobs.job(queue=Q, name="Crunch", registry=registry)
    async def crunch(data: Any, ctx: Any) -> None:
        spin(BLOCK_S)

    job_id, node_records = await run_beside_node(prefix, producer, start_worker, redis)
    assert [r["id"] for r in node_records] == [job_id]
    # The run Python could not record (its lock was gone) is logged as such; the slot goes on.
    assert "could not be recorded" in caplog.text
    assert "slot stopped on an unexpected error" not in caplog.text


async def test_def_handlers_run_on_at_most_one_thread_per_slot(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    names: set[str] = set()

    @twenty_jobs.job(queue=Q, name="Sleep", registry=registry)
    def sleep(data: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            names.add(threading.current_thread().name)
        time.sleep(0.2)
        with lock:
            running -= 1

    await producer.add_bulk(Q, "Sleep", [{} for _ in range(9)])
    assert await burst(prefix, registry, [Q], concurrency=3) == 0
    assert peak == 3 and len(names) == 3


async def test_a_def_handler_sees_the_abort_signal_at_the_shutdown_deadline(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis, start_worker: Any
) -> None:
    seen: list[tuple[bool, str | None]] = []
    done = threading.Event()

    @twenty_jobs.job(queue=Q, name="Wait", registry=registry)
    def wait(data: Any, ctx: twenty_jobs.BlockingJobContext) -> None:
        seen.append((ctx.wait_aborted(20), ctx.abort_reason))
        done.set()

    running = await start_worker([Q], grace_s=0.3)
    job_id = await producer.add(Q, "Wait", {})
    await wait_until(lambda: running.worker.workers[0].active)
    assert await running.stop() == 1  # the deadline passed with the job still running
    assert await asyncio.to_thread(done.wait, 5)
    assert seen == [(True, "worker shutdown deadline")]
    # Cut short: left active for the stall checker, nothing recorded.
    assert str(job_id) in await redis.lrange(f"{prefix}:{Q}:active", 0, -1)


async def test_a_def_handler_updates_progress_logs_data_and_enqueues_through_its_context(
    producer: Producer, registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    @twenty_jobs.job(queue=Q, name="Steps", registry=registry)
    def steps(data: dict[str, int], ctx: twenty_jobs.BlockingJobContext) -> int:
        ctx.update_progress({"done": 1, "of": 2})
        ctx.log("half way")
        ctx.update_data({**data, "seen": True})
        follow_up = ctx.run(ctx.producer.add(Q, "After", {"from": ctx.job_id}))
        assert follow_up is not None
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return data["n"] * 2

    @twenty_jobs.job(queue=Q, name="After", registry=registry)
    def after(data: dict[str, str]) -> str:
        return data["from"]

    job_id = await producer.add(Q, "Steps", {"n": 21}, retry_limit=1)
    assert await burst(prefix, registry, [Q]) == 0
    view = await arun_fixture("inspect-job", prefix=prefix, queue=Q, id=job_id)
    assert view["state"] == "completed" and view["returnvalue"] == 42 and view["attemptsMade"] == 2
    assert view["progress"] == {"done": 1, "of": 2} and view["data"] == {"n": 21, "seen": True}
    assert view["failedReason"] == "first attempt fails"
    assert view["logs"]["logs"] == ["half way", "half way"]
    assert await redis.zcard(f"{prefix}:{Q}:completed") == 3  # and both follow-ups ran
