"""Retries with backoff, attemptsMade, failures and return values, as the other side reads them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bullmq import Job, Queue

from interop_tests.conftest import Node, wait_for_job_state
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.twenty.options import Backoff

QUEUE = "workspace-queue"
# A retry may start this much later than its backoff (Redis timer granularity, see test_order_and_delay).
LATE_MS = 150


@asynccontextmanager
async def python_queue(redis_url: str, prefix: str, name: str = QUEUE) -> AsyncIterator[Queue]:
    queue = Queue(name, {"connection": redis_url, "prefix": prefix})
    try:
        yield queue
    finally:
        await queue.close()


def gaps(records: list[dict[str, Any]]) -> list[float]:
    starts = [r["startedAt"] for r in records]
    return [b - a for a, b in itertools.pairwise(starts)]


def assert_gaps(actual: list[float], minimum: list[float], maximum: list[float]) -> None:
    assert len(actual) == len(minimum)
    for got, lo, hi in zip(actual, minimum, maximum, strict=True):
        assert lo <= got <= hi, f"retry gaps {[round(g) for g in actual]} ms, wanted within {minimum}..{maximum}"


# -- retries and backoff ------------------------------------------------------------------------------

async def test_python_retries_node_job_with_fixed_backoff(node: Node, redis_url: str, prefix: str) -> None:
    backoff = {"strategy": "fixed", "initialDelayMilliseconds": 300}
    added = await node("add", queue=QUEUE, name="Flaky", data={"n": 1}, retry_limit=2, backoff=backoff)
    recorder = Recorder()
    handler = recording_handler(recorder, fail_times=2, return_value={"ok": True})
    async with PythonWorker(redis_url, prefix, QUEUE, {"Flaky": handler}):
        records = await recorder.wait_for(3)
        view = await wait_for_job_state(node, QUEUE, added["id"], "completed")

    assert [r["attemptsMade"] for r in records] == [0, 1, 2]
    assert_gaps(gaps(records), [300, 300], [300 + LATE_MS, 300 + LATE_MS])
    assert view["attemptsMade"] == 3
    assert view["returnvalue"] == {"ok": True}
    assert len(view["stacktrace"]) == 2
    assert all("ValueError: python failure" in frame for frame in view["stacktrace"])


async def test_python_retries_node_job_with_exponential_backoff(node: Node, redis_url: str, prefix: str) -> None:
    backoff = {"strategy": "exponential", "initialDelayMilliseconds": 150}
    added = await node("add", queue=QUEUE, name="Flaky", data={}, retry_limit=3, backoff=backoff)
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Flaky": recording_handler(recorder, fail_times=3)}):
        records = await recorder.wait_for(4)
        view = await wait_for_job_state(node, QUEUE, added["id"], "completed")
    assert [r["attemptsMade"] for r in records] == [0, 1, 2, 3]
    # 2^(attemptsMade-1) * delay: 150, 300, 600 ms
    assert_gaps(gaps(records), [150, 300, 600], [150 + LATE_MS, 300 + LATE_MS, 600 + LATE_MS])
    assert view["attemptsMade"] == 4


async def test_python_applies_twenty_backoff_jitter(node: Node, redis_url: str, prefix: str) -> None:
    # Twenty's email backoff: exponential with jitter 0.5. Node draws each delay from
    # [delay * (1 - jitter), delay]; the bare port ignores jitter, twenty-jobs applies it.
    backoff = {"strategy": "exponential", "initialDelayMilliseconds": 400, "jitter": 0.5}
    await node("add", queue=QUEUE, name="Flaky", data={}, retry_limit=2, backoff=backoff)
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Flaky": recording_handler(recorder, fail_times=2)}):
        records = await recorder.wait_for(3)
    assert_gaps(gaps(records), [200, 400], [400 + LATE_MS, 800 + LATE_MS])


async def test_node_retries_python_job_with_backoff(
    node: Node, producer: Producer, redis_url: str, prefix: str
) -> None:
    fixed = await producer.add(QUEUE, "Flaky", {"k": "fixed"}, retry_limit=2, backoff=Backoff("fixed", 300))
    async with node.worker(QUEUE, fail_times=2, max_jobs=1) as worker:
        fixed_records = await worker.await_records(3)
        await worker.await_exit()
    expo = await producer.add(QUEUE, "Flaky", {"k": "expo"}, retry_limit=2, backoff=Backoff("exponential", 150))
    async with node.worker(QUEUE, fail_times=2, max_jobs=1) as worker:
        expo_records = await worker.await_records(3)
        await worker.await_exit()

    assert [r["id"] for r in fixed_records] == [fixed] * 3
    assert [r["attemptsMade"] for r in fixed_records] == [0, 1, 2]
    assert_gaps(gaps(fixed_records), [300, 300], [300 + LATE_MS, 300 + LATE_MS])
    assert [r["id"] for r in expo_records] == [expo] * 3
    assert_gaps(gaps(expo_records), [150, 300], [150 + LATE_MS, 300 + LATE_MS])

    # Python reads what Node wrote.
    async with python_queue(redis_url, prefix) as queue:
        job = await Job.fromId(queue, fixed)
        assert job is not None
        assert job.attemptsMade == 3
        assert await job.getState() == "completed"
        assert job.returnvalue == {"processedBy": "node", "pid": fixed_records[0]["pid"]}
        assert len(job.stacktrace) == 2 and job.stacktrace[0].startswith("Error: fixture failure")


# -- failures -----------------------------------------------------------------------------------------

FAIL_MESSAGE = "python failure é 🚀 <tag> \"quoted\""


async def test_python_failure_is_readable_by_node(node: Node, redis_url: str, prefix: str) -> None:
    added = await node("add", queue=QUEUE, name="Broken", data={}, retry_limit=1)
    recorder = Recorder()
    handler = recording_handler(recorder, fail_times=99, fail_message=FAIL_MESSAGE)
    async with PythonWorker(redis_url, prefix, QUEUE, {"Broken": handler}):
        await recorder.wait_for(2)
        view = await wait_for_job_state(node, QUEUE, added["id"], "failed")

    assert view["failedReason"] == FAIL_MESSAGE
    assert view["attemptsMade"] == 2
    assert view["finishedOn"] is not None and view["processedOn"] is not None
    assert len(view["stacktrace"]) == 2  # one per failed attempt, as Node records its own
    for entry in view["stacktrace"]:
        # Node's shape: `ErrorType: message` first, then the handler's frames, not the worker's.
        first, *frames = entry.split("\n")
        assert first == f"ValueError: {FAIL_MESSAGE}"
        assert frames[0].strip().startswith('File "') and frames[0].endswith(", in handler")
        assert "twenty_jobs/runtime" not in entry

    failed = (await node("failed", queue=QUEUE))["jobs"]
    assert [(j["id"], j["failedReason"], j["attemptsMade"]) for j in failed] == [(added["id"], FAIL_MESSAGE, 2)]


async def test_unknown_job_name_fails_at_once_with_a_reason_node_can_read(
    node: Node, redis_url: str, prefix: str
) -> None:
    # Twenty's Node worker silently completes a job nobody handles; twenty-jobs fails it, once.
    added = await node("add", queue=QUEUE, name="NobodyHandlesThis", data={}, retry_limit=3)
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Known": recording_handler(recorder)}):
        view = await wait_for_job_state(node, QUEUE, added["id"], "failed")
    assert "NobodyHandlesThis" in view["failedReason"]
    assert view["attemptsMade"] == 1  # unrecoverable: no retries spent on it
    # The worker's own failure: the first line alone, no traceback of the worker's internals.
    assert view["stacktrace"] == [f"WorkerFailure: {view['failedReason']}"]
    assert recorder.records == []


async def test_python_return_values_are_readable_by_node(node: Node, redis_url: str, prefix: str) -> None:
    values: list[Any] = [
        {"ok": True, "count": 42, "text": "é 日本 🚀", "nested": {"list": [1, None, 0.5]}},
        "a plain string",
        12345,
        [1, "two", None],
    ]
    ids = [(await node("add", queue=QUEUE, name=f"Ret{i}", data={"i": i}))["id"] for i in range(len(values))]
    handlers = {}
    recorder = Recorder()
    for i, value in enumerate(values):
        handlers[f"Ret{i}"] = recording_handler(recorder, return_value=value)
    async with PythonWorker(redis_url, prefix, QUEUE, handlers):
        await recorder.wait_for(len(values))
        views = [await wait_for_job_state(node, QUEUE, job_id, "completed") for job_id in ids]
    assert [v["returnvalue"] for v in views] == values

