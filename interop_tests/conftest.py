"""Shared fixtures of the interop suite: real Redis, real Node bullmq (node_fixture), real Python
workers. Every test gets its own key prefix, and its keys are deleted afterwards (SCAN + UNLINK;
never FLUSHDB: this Redis is shared)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from interop_tests.node import FixtureError, NodeWorker, arun_fixture, fixture_installed, run_fixture
from twenty_jobs.runtime.producer import Producer

REDIS_URL = os.environ.get("TWENTY_JOBS_TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under `<prefix>:` (this test's keys only)."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[Any] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


def pytest_sessionstart(session: pytest.Session) -> None:
    # Fail loudly (not skip) when the Node side is missing: `make install` installs it.
    if not fixture_installed():
        raise pytest.UsageError(
            "interop tests need node_fixture/node_modules: run `make install` (or `npm ci` in node_fixture/)"
        )


@pytest.fixture(scope="session")
def node_bullmq_version() -> str:
    """The Node bullmq version the fixture runs (TWENTY_JOBS_NODE_BULLMQ selects it)."""
    version: str = run_fixture("version")["bullmq"]
    return version


@pytest.fixture(scope="session")
def node_major(node_bullmq_version: str) -> int:
    return int(node_bullmq_version.split(".")[0])


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"tj-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_prefix(name)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


class Node:
    """The Node fixture bound to this test's prefix: `await node("add", queue=..., ...)`."""

    def __init__(self, prefix: str, redis_url: str) -> None:
        self.prefix = prefix
        self.redis_url = redis_url
        self.workers: list[NodeWorker] = []

    async def __call__(self, cmd: str, **opts: Any) -> dict[str, Any]:
        return await arun_fixture(cmd, prefix=self.prefix, redis_url=self.redis_url, **opts)

    def worker(self, queue: str, **opts: Any) -> NodeWorker:
        """A NodeWorker for this prefix (not started); stopped at teardown if still running."""
        worker = NodeWorker(queue, prefix=self.prefix, redis_url=self.redis_url, **opts)
        self.workers.append(worker)
        return worker

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                try:
                    worker.stop(10)
                except FixtureError:
                    pass
            worker.kill()  # no-op for an exited worker; removes its temp file


@pytest.fixture
def node(prefix: str, redis_url: str) -> Iterator[Node]:
    helper = Node(prefix, redis_url)
    yield helper
    helper.cleanup()


@pytest.fixture
async def producer(redis_url: str, prefix: str) -> AsyncIterator[Producer]:
    async with Producer(redis_url, prefix=prefix, allow_any_queue=True) as p:
        yield p


async def wait_for_job_state(
    node: Node, queue: str, job_id: str, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll Node's view of a job (`inspect-job`) until it reaches `state`; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        view = await node("inspect-job", queue=queue, id=job_id)
        if view.get("state") == state:
            return view
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} is {view.get('state')!r}, not {state!r}, after {timeout} s: {view}")
        await asyncio.sleep(0.05)
