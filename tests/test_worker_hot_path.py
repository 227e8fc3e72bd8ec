"""The worker's hot path: the pipelined command connection matches replies to commands,
concurrency slots neither lose jobs nor spin on an idle queue, and each handler runs in a context
of its own. (The script arguments are compared with the port's in test_wire_scripts.py.)"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from twenty_jobs.runtime.own_context import InOwnContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry

from .conftest import wait_until
from .test_worker import burst

Q = "workspace-queue"

class CountingConnection:
    """A command connection that counts the scripts run through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scripts = 0

    async def call(self, *args: Any) -> Any:
        return await self.inner.call(*args)

    async def run_script(self, lua: Any, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        self.scripts += 1
        return await self.inner.run_script(lua, keys, args, idempotent=idempotent)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_concurrency_slots_drain_everything_and_an_idle_worker_does_not_spin(
    producer: Producer, registry: Registry, start_worker: Any, redis: aioredis.Redis, prefix: str
) -> None:
    seen: list[int] = []
    running = 0
    peak = 0

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: dict[str, int], ctx: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        seen.append(data["i"])

    worker = await start_worker([Q], concurrency=10)
    qw = worker.worker.workers[0]
    counting = CountingConnection(qw.conn)
    qw.conn = counting  # the slots' command connection
    await producer.add_bulk(Q, "N", [{"i": i} for i in range(300)])
    await wait_until(lambda: len(seen) == 300, timeout=20)
    assert sorted(seen) == list(range(300))
    assert peak == 10
    # Idle: one slot blocks on the marker, the others are parked; nobody polls.
    await asyncio.sleep(0.3)
    before = counting.scripts
    await asyncio.sleep(1.0)
    assert counting.scripts == before
    # A trickle of single jobs costs a few script calls per job, not one per slot (docs/traps.md F4).
    before = counting.scripts
    for i in range(20):
        await producer.add(Q, "N", {"i": 1000 + i})
        await asyncio.sleep(0.02)
    await wait_until(lambda: len(seen) == 320, timeout=10)
    await asyncio.sleep(0.1)
    assert (counting.scripts - before) / 20 <= 5
    assert await redis.llen(f"{prefix}:{Q}:active") == 0


_LEAK: contextvars.ContextVar[str] = contextvars.ContextVar("leak", default="clean")


async def test_context_variables_a_handler_sets_do_not_leak_into_the_next_job(
    producer: Producer, registry: Registry, prefix: str
) -> None:
    seen: list[str] = []

    @twenty_jobs.job(queue=Q, name="C", registry=registry)
    async def c(data: dict[str, int], ctx: Any) -> None:
        seen.append(_LEAK.get())
        await asyncio.sleep(0)
        _LEAK.set(f"job {data['i']}")

    for i in range(3):
        await producer.add(Q, "C", {"i": i})
    assert await burst(prefix, registry, concurrency=1) == 0
    assert seen == ["clean", "clean", "clean"]


async def test_in_context_passes_results_errors_and_cancellation_through() -> None:
    async def suspends_then(value: Any) -> Any:
        await asyncio.sleep(0.01)
        if isinstance(value, BaseException):
            raise value
        return value

    assert await InOwnContext(suspends_then(7), contextvars.copy_context()) == 7
    with pytest.raises(KeyError):
        await InOwnContext(suspends_then(KeyError("k")), contextvars.copy_context())

    cleaned: list[str] = []

    async def long_running() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("finally ran")

    task = asyncio.ensure_future(_await_in_context(long_running()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"]


async def _await_in_context(coro: Any) -> Any:
    return await InOwnContext(coro, contextvars.copy_context())


async def test_pausing_a_queue_worker_stops_its_slots_and_resuming_restarts_them(
    producer: Producer, registry: Registry, start_worker: Any
) -> None:
    seen: list[int] = []

    @twenty_jobs.job(queue=Q, name="P", registry=registry)
    async def p(data: dict[str, int], ctx: Any) -> None:
        seen.append(data["i"])

    worker = await start_worker([Q], concurrency=3)
    qw = worker.worker.workers[0]
    await producer.add(Q, "P", {"i": 0})
    await wait_until(lambda: seen == [0], timeout=5)
    await asyncio.wait_for(qw.pause(), 5)
    await producer.add(Q, "P", {"i": 1})
    await asyncio.sleep(0.3)
    assert seen == [0]
    qw.resume()
    await wait_until(lambda: seen == [0, 1], timeout=5)
