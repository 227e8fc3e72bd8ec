"""The worker's hot path is exact: the moveToFinished arguments are the port's byte for byte, a
job built from its hash equals the port's `Job.fromJSON`, and concurrency slots neither lose jobs
nor spin on an idle queue. The pipelined command connection has tests of its own
(test_pipelined_connection.py)."""

from __future__ import annotations

import asyncio
import contextvars
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Job
from bullmq.scripts import Scripts

import twenty_jobs
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import QueueWorker, WorkerConfig, _InContext
from twenty_jobs.twenty.queues import queue_config
from twenty_jobs.wire.finish import CompletedArgs

from .conftest import REDIS_URL, wait_until
from .test_worker import burst

Q = "workspace-queue"

TWENTY_OPTS = (
    '{"removeOnFail":{"age":604800,"count":1000},"priority":5,'
    '"removeOnComplete":{"age":14400,"count":1000},"attempts":1}'
)

HASHES: list[dict[str, str]] = [
    # What Twenty's Node driver writes, as moveToActive/moveToFinished return it.
    {"name": "SomeJob", "data": '{"i":1,"workspaceId":"ws"}', "opts": TWENTY_OPTS, "timestamp": "1700000000000",
     "delay": "0", "priority": "5", "processedOn": "1700000000100", "ats": "1"},
    # A retried job: attempts made, a stack trace, a failed reason, progress, stall counter.
    {"name": "Retry", "data": "[1,2]", "timestamp": "1", "delay": "0", "priority": "0", "atm": "2", "ats": "3",
     "stc": "1", "failedReason": "boom", "stacktrace": '["a","b"]', "progress": '{"p":50}',
     "opts": '{"attempts":3,"backoff":{"type":"exponential","delay":100,"jitter":0.5},"kl":10}'},
    # Backoff as a number (normalized to fixed), a return value, finishedOn, deferred failure, scheduler key.
    {"name": "Cron", "data": "{}",
     "opts": '{"backoff":250,"attempts":2,"removeOnComplete":true,"repeat":{"every":1000}}',
     "timestamp": "5", "returnvalue": '{"ok":true}', "finishedOn": "9", "defa": "stalled too often",
     "rjk": "sched-1"},
    # No opts, no data: the port's defaults.
    {"name": "Bare", "timestamp": "7"},
    # Parent and deduplication options: left to the port's own code path.
    {"name": "Child", "data": "{}", "timestamp": "1",
     "opts": '{"parent":{"id":"p1","queue":"bull:parents"},"fpof":true,"de":{"id":"d1"}}',
     "parentKey": "bull:parents:p1", "parent": '{"id":"p1","queueKey":"bull:parents"}'},
]


@pytest.fixture
async def queue_worker(prefix: str) -> Any:
    registry = Registry()

    @twenty_jobs.job(queue=Q, name="SomeJob", registry=registry)
    async def some_job(data: Any, ctx: Any) -> None:
        return None

    config = WorkerConfig(queues=[Q], redis_url=REDIS_URL, prefix=prefix, install_signal_handlers=False)
    producer = Producer(REDIS_URL, prefix=prefix, registry=registry)
    worker = QueueWorker(queue_config(Q), registry.for_queue(Q), config, producer, [])
    yield worker
    await worker.backend.close(force=True)
    await producer.close()


@pytest.mark.parametrize("fields", HASHES, ids=[h["name"] for h in HASHES])
async def test_job_built_from_a_hash_equals_the_ports_job_from_json(queue_worker: Any, fields: dict[str, str]) -> None:
    ported = Job.fromJSON(queue_worker, dict(fields), "42")
    fast = queue_worker._job_from_hash(dict(fields), "42")
    assert vars(fast) == vars(ported)
    assert list(fast.opts) == list(ported.opts)
    # Twice: the second one comes from the options cache and must still be equal.
    again = queue_worker._job_from_hash(dict(fields), "42")
    assert vars(again) == vars(ported)


async def test_cached_options_are_copied_per_job(queue_worker: Any) -> None:
    first = queue_worker._job_from_hash(dict(HASHES[0]), "1")
    first.opts["removeOnComplete"]["count"] = 1
    first.removeOnFail["age"] = 0
    second = queue_worker._job_from_hash(dict(HASHES[0]), "2")
    assert second.opts["removeOnComplete"] == {"age": 14400, "count": 1000}
    assert second.removeOnFail == {"age": 604800, "count": 1000}
    assert second.removeOnComplete is second.opts["removeOnComplete"]


async def test_unparseable_hash_raises_like_the_port(queue_worker: Any) -> None:
    broken = {**HASHES[0], "data": "{not json"}
    with pytest.raises(ValueError):
        Job.fromJSON(queue_worker, dict(broken), "1")
    with pytest.raises(ValueError):
        queue_worker._job_from_hash(dict(broken), "1")


@pytest.mark.parametrize(
    ("remove_on_complete", "fetch_next", "result"),
    [({"age": 14400, "count": 1000}, True, None), (True, False, {"a": [1, "é"]}), (5, True, "x"),
     (False, True, 3.5), (None, False, [])],
)
def test_completed_args_are_the_ports_moveToCompletedArgs(
    monkeypatch: pytest.MonkeyPatch, remove_on_complete: Any, fetch_next: bool, result: Any
) -> None:
    monkeypatch.setattr("time.time", lambda: 1_700_000_000.1234)
    worker_opts = {"lockDuration": 30000, "metrics": {"maxDataPoints": 10080}, "concurrency": 3}
    scripts = Scripts("bull", Q, SimpleNamespace(conn=None, commands={}))  # type: ignore[arg-type]
    fields = {**HASHES[1], "opts": '{"attempts":3,"fpof":true}'}
    job = Job.fromJSON(SimpleNamespace(opts=worker_opts, backend=None, qualifiedName="bull:" + Q), fields, "77")
    job.attemptsMade = 2
    expected = scripts.moveToCompletedArgs(job, result, remove_on_complete, "tok:1", fetch_next)
    built = CompletedArgs(scripts.keys, scripts.toKey("metrics:completed"), worker_opts).build(
        job, result, remove_on_complete, "tok:1", fetch_next
    )
    assert built == expected


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
    calls = 0
    original = qw.commands.run_script
    original_exec = qw.client.execute_command

    async def counting_script(*a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*a, **kw)

    async def counting_exec(*a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += a[0] == "EVALSHA"
        return await original_exec(*a, **kw)

    qw.commands.run_script = counting_script  # type: ignore[method-assign]
    qw.client.execute_command = counting_exec
    await producer.add_bulk(Q, "N", [{"i": i} for i in range(300)])
    await wait_until(lambda: len(seen) == 300, timeout=20)
    assert sorted(seen) == list(range(300))
    assert peak == 10
    # Idle: one slot blocks on the marker, the others are parked; nobody polls.
    await asyncio.sleep(0.3)
    before = calls
    await asyncio.sleep(1.0)
    assert calls == before
    assert len(qw._parked) == 9
    # A trickle of single jobs costs a few script calls per job, not one per slot (baseline F4).
    before = calls
    for i in range(20):
        await producer.add(Q, "N", {"i": 1000 + i})
        await asyncio.sleep(0.02)
    await wait_until(lambda: len(seen) == 320, timeout=10)
    await asyncio.sleep(0.1)
    assert (calls - before) / 20 <= 5
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

    assert await _InContext(suspends_then(7), contextvars.copy_context()) == 7
    with pytest.raises(KeyError):
        await _InContext(suspends_then(KeyError("k")), contextvars.copy_context())

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
    return await _InContext(coro, contextvars.copy_context())


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
    assert all(task.done() for task in qw.processing)
    await producer.add(Q, "P", {"i": 1})
    await asyncio.sleep(0.3)
    assert seen == [0]
    qw.resume()
    await wait_until(lambda: seen == [0, 1], timeout=5)
