"""Job schedulers (Twenty's crons) made on one side keep iterating when only the other side works
the queue: the next iteration is created by the worker that fetches the current one."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

from interop_tests.conftest import Node
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.producer import Producer

QUEUE = "cron-queue"
EVERY_MS = 400
EVERY_RUN_S = 2.3  # -> at least 4 iterations
PATTERN = "*/1 * * * * *"  # every second (6-field, seconds first)
PATTERN_RUN_S = 3.4  # -> at least 3 iterations
LATE_MS = 150


def _millis_of(job_id: str, scheduler_id: str) -> int:
    match = re.fullmatch(rf"repeat:{re.escape(scheduler_id)}:(\d+)", job_id)
    assert match, f"iteration id {job_id!r} is not repeat:{scheduler_id}:<millis>"
    return int(match.group(1))


def _check_every(records: list[dict[str, Any]], scheduler_id: str, data: Any) -> None:
    assert len(records) >= 4, f"only {len(records)} iterations in {EVERY_RUN_S} s"
    assert len({r["id"] for r in records}) == len(records)  # each iteration once
    assert all(r["data"] == data for r in records)
    slots = [_millis_of(r["id"], scheduler_id) for r in records]
    steps = [b - a for a, b in itertools.pairwise(slots)]
    # The first iteration runs when the scheduler is made; later ones sit on the `every` grid
    # (bullmq versions differ in how they align the second one).
    assert 0 < steps[0] <= 2 * EVERY_MS, steps
    assert steps[1:] == [EVERY_MS] * (len(steps) - 1), steps
    for record, slot in zip(records[1:], slots[1:], strict=True):
        assert 0 <= record["startedAt"] - slot <= LATE_MS, (record["startedAt"], slot)


def _check_pattern(records: list[dict[str, Any]], scheduler_id: str) -> None:
    assert len(records) >= 3, f"only {len(records)} iterations in {PATTERN_RUN_S} s"
    slots = [_millis_of(r["id"], scheduler_id) for r in records]
    assert all(slot % 1000 == 0 for slot in slots)
    assert [b - a for a, b in itertools.pairwise(slots)] == [1000] * (len(slots) - 1)
    assert all(r["data"] == {} for r in records)
    for record, slot in zip(records, slots, strict=True):
        assert 0 <= record["startedAt"] - slot <= LATE_MS, (record["startedAt"], slot)


async def _scheduler(node: Node, scheduler_id: str) -> dict[str, Any]:
    schedulers = (await node("schedulers", queue=QUEUE))["schedulers"]
    (found,) = [s for s in schedulers if s["key"] == scheduler_id]
    return found


async def test_python_worker_advances_node_schedulers(node: Node, redis_url: str, prefix: str) -> None:
    every, pattern = Recorder(), Recorder()
    handlers = {"EveryJob": recording_handler(every), "PatternJob": recording_handler(pattern)}
    async with PythonWorker(redis_url, prefix, QUEUE, handlers, concurrency=2):
        await node("add-cron", queue=QUEUE, name="EveryJob", job_id="ws-1", every=EVERY_MS, data={"x": 1, "s": "é"})
        await node("add-cron", queue=QUEUE, name="PatternJob", pattern=PATTERN)  # Twenty's crons: no data
        await asyncio.sleep(PATTERN_RUN_S)

    _check_every(every.records, "EveryJob.ws-1", {"x": 1, "s": "é"})
    _check_pattern(pattern.records, "PatternJob")
    # Node still sees both schedulers, each with its next iteration waiting as a delayed job.
    for scheduler_id, recorder in (("EveryJob.ws-1", every), ("PatternJob", pattern)):
        scheduler = await _scheduler(node, scheduler_id)
        last_slot = _millis_of(recorder.records[-1]["id"], scheduler_id)
        assert int(scheduler["next"]) > last_slot
        if "iterationCount" in scheduler:  # bullmq >= 5.5x reports it
            assert scheduler["iterationCount"] >= len(recorder.records)
        next_job = await node("inspect-job", queue=QUEUE, id=f"repeat:{scheduler_id}:{scheduler['next']}")
        assert next_job["state"] == "delayed"
    assert (await node("counts", queue=QUEUE))["delayed"] == 2


async def test_node_worker_advances_python_schedulers(node: Node, producer: Producer, prefix: str) -> None:
    async with node.worker(QUEUE, concurrency=2) as worker:
        assert await producer.add_cron(QUEUE, "EveryJob", {"x": 2}, every_ms=EVERY_MS, job_id="ws-2") == (
            "EveryJob.ws-2"
        )
        assert await producer.add_cron(QUEUE, "PatternJob", pattern=PATTERN) == "PatternJob"
        await asyncio.sleep(PATTERN_RUN_S)
        await worker.astop()
    records = worker.records()
    _check_every([r for r in records if r["name"] == "EveryJob"], "EveryJob.ws-2", {"x": 2})
    _check_pattern([r for r in records if r["name"] == "PatternJob"], "PatternJob")
    assert (await node("counts", queue=QUEUE))["delayed"] == 2
    # Twenty's cron template options survive on every iteration.
    assert all(r["opts"]["removeOnComplete"] == {"age": 14400, "count": 1000} for r in records)


async def test_schedulers_are_removed_from_the_other_side(node: Node, producer: Producer) -> None:
    await node("add-cron", queue=QUEUE, name="NodeCron", pattern="0 * * * *")
    await producer.add_cron(QUEUE, "PyCron", every_ms=60_000, job_id="ws-3")
    assert await producer.remove_cron(QUEUE, "NodeCron") is True
    assert (await node("remove-cron", queue=QUEUE, name="PyCron", job_id="ws-3"))["removed"] is True
    assert (await node("schedulers", queue=QUEUE))["schedulers"] == []
    # No next iteration is left behind (an `every` scheduler's first iteration, due at once, may
    # already sit in `wait`: removing a scheduler never removes a due job).
    assert (await node("counts", queue=QUEUE))["delayed"] == 0
