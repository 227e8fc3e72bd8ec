"""`twenty-jobs pause/resume` refuses a queue that Node bullmq < 6 shares (the proven data loss of
mixed pause/resume, bullmq-python.md §5), and works where it is safe."""

from __future__ import annotations

import redis.asyncio as aioredis

from interop_tests.node import arun_fixture
from twenty_jobs.producer import Producer

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
