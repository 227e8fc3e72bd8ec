"""Priority order and delayed jobs, across the Node/Python boundary."""

from __future__ import annotations

import asyncio
from typing import Any

from interop_tests.conftest import Node
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.producer import Producer

QUEUE = "webhook-queue"
# Delayed jobs must start within this many ms of their due time (issue 3). Redis runs its timers
# at hz=10, so ~60-100 ms of lateness is expected on both Node and Python.
DUE_TOLERANCE_MS = 150
DELAYS_MS = (300, 600, 900)

# (label, priority): priority 0 is BullMQ's plain wait list, served before any prioritized job;
# lower numbers first; equal priorities in insertion order.
PRIORITIES = [("p5", 5), ("p1", 1), ("p3", 3), ("p2-a", 2), ("p4", 4), ("p2-b", 2), ("plain", 0)]
EXPECTED_ORDER = ["plain", "p1", "p2-a", "p2-b", "p3", "p4", "p5"]


async def test_python_worker_takes_node_jobs_in_priority_order(node: Node, redis_url: str, prefix: str) -> None:
    for label, priority in PRIORITIES:
        if priority == 0:
            await node("add-raw", queue=QUEUE, name="Job", data={"label": label}, opts={})
        else:
            await node("add", queue=QUEUE, name="Job", data={"label": label}, priority=priority)
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(recorder)}, concurrency=1):
        records = await recorder.wait_for(len(PRIORITIES))
    assert [r["data"]["label"] for r in records] == EXPECTED_ORDER


async def test_node_worker_takes_python_jobs_in_priority_order(node: Node, producer: Producer) -> None:
    for label, priority in PRIORITIES:
        await producer.add(QUEUE, "Job", {"label": label}, priority=priority)
    async with node.worker(QUEUE, concurrency=1, max_jobs=len(PRIORITIES)) as worker:
        records = await worker.await_records(len(PRIORITIES))
        await worker.await_exit()
    assert [r["data"]["label"] for r in records] == EXPECTED_ORDER
    assert [r["priority"] for r in records] == [0, 1, 2, 2, 3, 4, 5]


async def test_the_default_priority_is_the_twenty_queues(node: Node, producer: Producer, prefix: str) -> None:
    # email-queue is 1, cron-queue 7 in MESSAGE_QUEUE_WORKER_CONFIG; both sides must agree.
    for queue, expected in (("email-queue", 1), ("cron-queue", 7), ("delete-cascade-queue", 6)):
        node_id = (await node("add", queue=queue, name="Job", data={}))["id"]
        py_id = await producer.add(queue, "Job", {})
        for job_id in (node_id, py_id):
            view = await node("inspect-job", queue=queue, id=job_id)
            assert view["priority"] == expected, (queue, job_id)
            assert view["state"] == "prioritized"


def _lateness(record: dict[str, Any]) -> float:
    # opts.delay: the hash's `delay` field is reset to 0 when the job is promoted from `delayed`.
    return float(record["startedAt"] - (record["timestamp"] + record["opts"]["delay"]))


async def test_python_worker_starts_node_delayed_jobs_on_time(node: Node, redis_url: str, prefix: str) -> None:
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Delayed": recording_handler(recorder)}):
        await asyncio.sleep(0.3)  # the worker is idle, blocked waiting for the marker
        for delay in DELAYS_MS:
            await node("add", queue=QUEUE, name="Delayed", data={"delay": delay}, delay=delay)
        records = await recorder.wait_for(len(DELAYS_MS), timeout=10)
    assert sorted(r["opts"]["delay"] for r in records) == list(DELAYS_MS)
    late = [round(_lateness(r)) for r in records]
    assert all(0 <= ms <= DUE_TOLERANCE_MS for ms in late), f"start minus due time (ms): {late}"


async def test_node_worker_starts_python_delayed_jobs_on_time(node: Node, producer: Producer) -> None:
    async with node.worker(QUEUE, max_jobs=len(DELAYS_MS)) as worker:
        await asyncio.sleep(0.3)
        for delay in DELAYS_MS:
            await producer.add(QUEUE, "Delayed", {"delay": delay}, delay=delay)
        records = await worker.await_records(len(DELAYS_MS), timeout=10)
        await worker.await_exit()
    assert sorted(r["opts"]["delay"] for r in records) == list(DELAYS_MS)
    late = [round(_lateness(r)) for r in records]
    assert all(0 <= ms <= DUE_TOLERANCE_MS for ms in late), f"start minus due time (ms): {late}"
