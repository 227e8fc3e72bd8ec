"""Retention (removeOnComplete/removeOnFail by age and count) on jobs a Python worker finishes, and
Twenty's dedupe by job id prefix from either side."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from interop_tests.conftest import Node
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.producer import BulkItem, Producer

QUEUE = "workspace-queue"


async def _zset_ids(redis_client: aioredis.Redis, prefix: str, state: str) -> list[str]:
    ids: list[str] = await redis_client.zrange(f"{prefix}:{QUEUE}:{state}", 0, -1)
    return ids


async def _exists(redis_client: aioredis.Redis, prefix: str, job_id: str) -> bool:
    return bool(await redis_client.exists(f"{prefix}:{QUEUE}:{job_id}"))


# -- retention ----------------------------------------------------------------------------------------

async def test_twenty_retention_counts_apply_to_python_finished_jobs(
    producer: Producer, redis_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    # Twenty's QUEUE_RETENTION: completed {age: 4 h, count: 1000}. 1003 jobs -> 1000 kept.
    ids = await producer.add_bulk(QUEUE, "Job", [{"i": i} for i in range(1003)])
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(recorder)}, concurrency=10):
        await recorder.wait_for(1003, timeout=60)
        await _until(lambda: redis_client.zcard(f"{prefix}:{QUEUE}:completed"), 1000)
    completed = set(await _zset_ids(redis_client, prefix, "completed"))
    assert len(completed) == 1000
    trimmed = [i for i in ids if i not in completed]
    assert len(trimmed) == 3
    for job_id in trimmed:
        assert not await _exists(redis_client, prefix, job_id)  # hash deleted, not just unlisted


async def test_node_retention_by_count_applies_to_python_finished_jobs(
    node: Node, redis_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    opts_ok = {"removeOnComplete": {"age": 14400, "count": 3}, "removeOnFail": {"age": 604800, "count": 2}}
    ok_ids = [(await node("add-raw", queue=QUEUE, name="Ok", data={"i": i}, opts=opts_ok))["id"] for i in range(6)]
    bad_ids = [(await node("add-raw", queue=QUEUE, name="Bad", data={"i": i}, opts=opts_ok))["id"] for i in range(4)]
    recorder = Recorder()
    handlers = {"Ok": recording_handler(recorder), "Bad": recording_handler(recorder, fail_times=1)}
    async with PythonWorker(redis_url, prefix, QUEUE, handlers, concurrency=1):
        await recorder.wait_for(10)
        await _until(lambda: redis_client.zcard(f"{prefix}:{QUEUE}:failed"), 2)
        await asyncio.sleep(0.1)
    # Sets, not lists: jobs finished within one millisecond share a score, and Redis then orders
    # them by id as a string ("10" before "9").
    assert set(await _zset_ids(redis_client, prefix, "completed")) == set(ok_ids[-3:])
    assert set(await _zset_ids(redis_client, prefix, "failed")) == set(bad_ids[-2:])
    for job_id in ok_ids[:3] + bad_ids[:2]:
        assert not await _exists(redis_client, prefix, job_id)
    counts = await node("counts", queue=QUEUE)
    assert (counts["completed"], counts["failed"]) == (3, 2)


async def test_node_retention_by_age_applies_to_python_finished_jobs(
    node: Node, redis_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    opts = {"removeOnComplete": {"age": 1, "count": 1000}}  # age is in seconds
    old = [(await node("add-raw", queue=QUEUE, name="Job", data={"i": i}, opts=opts))["id"] for i in range(2)]
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(recorder)}):
        await recorder.wait_for(2)
        await _until(lambda: redis_client.zcard(f"{prefix}:{QUEUE}:completed"), 2)
        await asyncio.sleep(2.1)
        new = (await node("add-raw", queue=QUEUE, name="Job", data={"i": 2}, opts=opts))["id"]
        await recorder.wait_for(3)
        await _until(lambda: redis_client.zcard(f"{prefix}:{QUEUE}:completed"), 1)
    # The completion of the new job removed the ones finished more than 1 s before.
    assert await _zset_ids(redis_client, prefix, "completed") == [new]
    for job_id in old:
        assert not await _exists(redis_client, prefix, job_id)


# -- Twenty's dedupe ----------------------------------------------------------------------------------

async def test_python_skips_an_id_node_already_queued(node: Node, producer: Producer) -> None:
    added = await node("add", queue=QUEUE, name="Sync", data={"from": "node"}, id="ws-1.sync")
    assert added["id"].startswith("ws-1.sync-")
    assert await producer.add(QUEUE, "Sync", {"from": "python"}, id="ws-1.sync") is None
    # A different id, and an id that merely starts the same way, are not duplicates.
    assert await producer.add(QUEUE, "Sync", {}, id="ws-1.sync2") is not None
    assert await producer.add(QUEUE, "Sync", {}, id="ws-1") is not None
    counts = await node("counts", queue=QUEUE)
    assert counts["prioritized"] == 3


async def test_node_skips_an_id_python_already_queued(node: Node, producer: Producer) -> None:
    job_id = await producer.add(QUEUE, "Sync", {"from": "python"}, id="ws-2.sync")
    assert job_id is not None and job_id.startswith("ws-2.sync-")
    assert await node("add", queue=QUEUE, name="Sync", data={}, id="ws-2.sync") == {"id": None, "deduplicated": True}
    assert (await node("add", queue=QUEUE, name="Sync", data={}, id="ws-2.other"))["id"] is not None
    assert (await node("counts", queue=QUEUE))["prioritized"] == 2


async def test_bulk_items_already_waiting_are_dropped_from_either_side(node: Node, producer: Producer) -> None:
    await node("add-bulk", queue=QUEUE, name="Bulk", items=[{"data": {"n": 1}, "jobId": "b-1"}])
    ids = await producer.add_bulk(QUEUE, "Bulk", [BulkItem({"n": 1}, "b-1"), BulkItem({"n": 2}, "b-2")])
    assert ids == ["b-2"]  # item ids are used verbatim
    node_ids = (await node(
        "add-bulk", queue=QUEUE, name="Bulk",
        items=[{"data": {}, "jobId": "b-2"}, {"data": {}, "jobId": "b-3"}, {"data": {}}],
    ))["ids"]
    assert node_ids[0] == "b-3" and len(node_ids) == 2
    assert (await node("counts", queue=QUEUE))["prioritized"] == 4


async def test_dedupe_only_looks_at_waiting_jobs(
    node: Node, producer: Producer, redis_url: str, prefix: str
) -> None:
    # Twenty reads waiting + prioritized only: a delayed or finished job with the id does not block.
    await node("add", queue=QUEUE, name="Later", data={}, id="ws-3.later", delay=60_000)
    assert await producer.add(QUEUE, "Later", {}, id="ws-3.later") is not None

    first = await producer.add(QUEUE, "Once", {}, id="ws-3.once")
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Once": recording_handler(recorder),
                                                      "Later": recording_handler(recorder)}):
        await recorder.wait_for(2)
    assert first in recorder.ids()
    again = await node("add", queue=QUEUE, name="Once", data={}, id="ws-3.once")
    assert again["id"] is not None and again["id"] != first


async def test_dedupe_on_a_plain_wait_list_queue(node: Node, producer: Producer) -> None:
    # A queue that is not Twenty's has no default priority: jobs sit in `wait`, not `prioritized`.
    queue = "custom-interop-queue"
    job_id = await producer.add(queue, "Job", {}, id="c-1")
    assert job_id is not None
    assert (await node("add", queue=queue, name="Job", data={}, id="c-1"))["deduplicated"] is True
    counts = await node("counts", queue=queue)
    assert (counts["waiting"], counts["prioritized"]) == (1, 0)


async def _until(read: object, expected: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await read()  # type: ignore[operator]
        if value == expected:
            return
        if loop.time() > deadline:
            raise AssertionError(f"value is {value}, expected {expected} within {timeout} s")
        await asyncio.sleep(0.02)
