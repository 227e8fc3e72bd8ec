"""`twenty-jobs pause/resume` refuses a queue that Node bullmq < 6 shares (the proven data loss of
mixed pause/resume, docs/mixed-versions.md), and works where it is safe."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import arun_fixture
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker

from .conftest import worker_config
from .test_cli import cli


async def test_pause_is_refused_when_node_5_40_shares_the_queue_and_nothing_is_lost(
    prefix: str, redis: aioredis.Redis, producer: Producer
) -> None:
    await arun_fixture("touch", prefix=prefix, queue="email-queue")  # a Twenty server opened the queue
    job_id = await producer.add("email-queue", "EmailSenderJob", {"to": "a@b.c"})
    out = cli("pause", "email-queue", "--prefix", prefix)
    assert out.returncode == 2
    assert "refusing to pause queue 'email-queue'" in out.stderr and "5.40.0" in out.stderr
    assert out.stderr.count("\n") == 1
    assert await redis.hexists(f"{prefix}:email-queue:meta", "paused") == 0
    assert await redis.zscore(f"{prefix}:email-queue:prioritized", str(job_id)) is not None
    resumed = cli("resume", "email-queue", "--prefix", prefix)
    assert resumed.returncode == 2 and "refusing to resume" in resumed.stderr


async def test_pause_and_resume_work_without_node_5_or_with_force(prefix: str, redis: aioredis.Redis) -> None:
    out = cli("pause", "webhook-queue", "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert await redis.hget(f"{prefix}:webhook-queue:meta", "paused") == "1"
    assert cli("resume", "webhook-queue", "--prefix", prefix).returncode == 0
    assert await redis.hexists(f"{prefix}:webhook-queue:meta", "paused") == 0
    await arun_fixture("touch", prefix=prefix, queue="webhook-queue")
    forced = cli("pause", "webhook-queue", "--force", "--prefix", prefix)
    assert forced.returncode == 0, forced.stderr
    assert await redis.hget(f"{prefix}:webhook-queue:meta", "paused") == "1"


def test_pause_of_an_unknown_queue_is_one_line() -> None:
    out = cli("pause", "emails-queue")
    assert out.returncode == 2 and "unknown queue 'emails-queue'" in out.stderr


async def test_worker_startup_warns_when_node_5_shares_a_served_queue(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.runtime.worker")
    registry = Registry()

    @twenty_jobs.job(queue="email-queue", name="EmailSenderJob", registry=registry)
    async def send(data: object, ctx: object) -> None:
        return None

    await arun_fixture("touch", prefix=prefix, queue="email-queue")
    worker = TwentyWorker(worker_config(prefix, ["email-queue"]), registry)
    await worker.start()
    try:
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "Node bullmq 5.40.0 (below 6)" in text
        assert "stalledCounter" in text and "`stc`" in text and "pause/resume" in text
    finally:
        await worker.close()
