"""Shared fixtures: every test gets its own BullMQ key prefix on the real local Redis, and its
keys are deleted afterwards (never a FLUSHDB: other suites and people share this Redis)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig

REPO = Path(__file__).resolve().parent.parent
# interop_tests/node.py drives node_fixture (real Node bullmq 5.40.0); tests here use it too.
sys.path.insert(0, str(REPO))

REDIS_URL = os.environ.get("TWENTY_JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379")


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"tj-test-{uuid.uuid4().hex[:12]}"
    yield name
    await delete_prefix(name)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def producer(redis_url: str, prefix: str, registry: Registry) -> AsyncIterator[Producer]:
    async with Producer(redis_url, prefix=prefix, registry=registry, allow_any_queue=True) as p:
        yield p


def worker_config(prefix: str, queues: list[str], **kw: Any) -> WorkerConfig:
    kw.setdefault("install_signal_handlers", False)
    kw.setdefault("grace_s", 5)
    return WorkerConfig(queues=queues, redis_url=REDIS_URL, prefix=prefix, **kw)


class RunningWorker:
    """A TwentyWorker running as a background task, stopped on demand."""

    def __init__(self, worker: TwentyWorker) -> None:
        self.worker = worker
        self.task: asyncio.Task[int] = asyncio.ensure_future(worker.run())

    async def ready(self) -> None:
        await asyncio.wait_for(self.worker.started.wait(), 10)
        # Give every queue worker time to issue its first fetch.
        await asyncio.sleep(0.2)

    async def stop(self) -> int:
        if not self.task.done():
            self.worker.request_stop()
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def start_worker(prefix: str, registry: Registry) -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    running: list[RunningWorker] = []

    async def start(queues: list[str], **kw: Any) -> RunningWorker:
        rw = RunningWorker(TwentyWorker(worker_config(prefix, queues, **kw), registry))
        running.append(rw)
        await rw.ready()
        return rw

    yield start
    for rw in running:
        await rw.stop()


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `predicate` (sync or async) until truthy; fail the test on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
