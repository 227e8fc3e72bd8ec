"""Faults under the worker: a Redis restart under `--burst`, and a finishing call whose reply is
lost with the connection (the job is then left to the stall checker, never finished twice)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from twenty_jobs.connection.protocol import ReplyLostError
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import WorkerConfig, run_worker

from .conftest import wait_until
from .test_shutdown import free_port, start_private_redis

Q = "workspace-queue"


async def test_burst_exits_after_a_redis_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_private_redis(port, tmp_path, persistent=True)
    registry = Registry()
    done: list[int] = []

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: dict[str, int], ctx: Any) -> None:
        done.append(data["i"])

    try:
        async with Producer(url, prefix="outage", registry=registry) as producer:
            await producer.add(Q, "N", {"i": 1})
            await producer.add(Q, "N", {"i": 2}, delay=5000)  # keeps --burst waiting over the outage
        config = WorkerConfig(queues=[Q], redis_url=url, prefix="outage", burst=True,
                              install_signal_handlers=False, grace_s=5)
        worker = asyncio.ensure_future(run_worker(config, registry))
        await wait_until(lambda: done == [1], timeout=10)
        server.terminate()
        server.wait(10)
        await asyncio.sleep(3.0)  # longer than the burst check's own retries (~1.5 s)
        server = start_private_redis(port, tmp_path, persistent=True)
        assert await asyncio.wait_for(worker, 30) == 0, caplog.text
        assert done == [1, 2], caplog.text
        # The outage outlasted the burst check's own retries: it failed, was logged, and went on.
        assert "burst: cannot read the queue counts" in caplog.text, caplog.text
    finally:
        server.kill()
        server.wait()


class LosesFinishingReplies:
    """The worker's command connection, except that the first `count` finishing calls are lost
    with the connection before they reach Redis (the connection raises ReplyLostError, as the
    protocol says it does for a command that is not idempotent)."""

    def __init__(self, inner: Any, count: int) -> None:
        self.inner = inner
        self.left = count

    async def call(self, *args: Any) -> Any:
        return await self.inner.call(*args)

    async def run_script(self, lua: Any, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        if lua.name == "moveToFinished" and self.left > 0:
            assert idempotent is False
            self.left -= 1
            raise ReplyLostError("connection dropped before the reply")
        return await self.inner.run_script(lua, keys, args, idempotent=idempotent)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_finishing_reply_leaves_the_job_to_the_stall_checker(
    producer: Producer, registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.runtime.worker")
    runs: list[str] = []

    @twenty_jobs.job(queue=Q, name="J", registry=registry)
    async def j(data: Any, ctx: twenty_jobs.JobContext) -> None:
        runs.append(ctx.job_id)

    running = await start_worker([Q], lock_duration_ms=500, stalled_interval_ms=300, max_stalled_count=3)
    qw = running.worker.workers[0]
    qw.conn = LosesFinishingReplies(qw.conn, 1)
    job_id = await producer.add(Q, "J", {})
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:completed", str(job_id)), timeout=15)
    # Run, reply lost (not re-sent: it may have run), lock expired, stalled, run again, completed.
    assert runs == [job_id, job_id]
    assert "left to the stall checker" in caplog.text
    assert await redis.hget(f"{prefix}:{Q}:{job_id}", "atm") == "1"
