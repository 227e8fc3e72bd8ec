"""Queue operations against queues real Node bullmq wrote and paused: the orphan a Node < 6 resume
makes of a job a newer BullMQ added while it had the queue paused, found by `doctor` and put back
by `repair --apply` so that Twenty's Node worker runs it; `queue stats` equal to Node's own
`getJobCounts`; and `queue pause` refused while Node < 6 shares the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue
from typer.testing import CliRunner

from interop_tests.conftest import Node
from twenty_jobs.cli.app import app

QUEUE = "cron-queue"  # no Twenty priority: its jobs live in `wait`, where the hazard is
runner = CliRunner()


async def cli(redis_url: str, prefix: str, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--redis-url", redis_url, "--prefix", prefix])
    return result.exit_code, result.output


@pytest.fixture
async def port_queue(redis_url: str, prefix: str) -> AsyncIterator[Queue]:
    """The bare BullMQ Python port (Node 6.4 Lua): a Python tool that writes the way twenty-jobs'
    producer did before it learned to write where Node 5 would."""
    queue = Queue(QUEUE, {"connection": redis_url, "prefix": prefix})
    yield queue
    await queue.close()


async def test_a_job_added_while_node_5_had_the_queue_paused_is_repaired_and_run_by_node(
    node: Node, port_queue: Queue, redis_client: aioredis.Redis, redis_url: str, prefix: str, node_major: int
) -> None:
    await node("touch", queue=QUEUE)  # a Twenty server opened the queue
    node_job = (await node("add-raw", queue=QUEUE, name="Job", data={"by": "node"}, opts={}))["id"]
    await node("pause", queue=QUEUE)  # bull-board's Pause button
    py_job = str((await port_queue.add("Job", {"by": "python"}, {})).id)
    assert (await node("resume", queue=QUEUE))["paused"] is False

    code, out = await cli(redis_url, prefix, "doctor", "--json")
    orphans = [f for f in json.loads(out)["findings"] if f["code"] == "orphaned_jobs" and f["severity"] == "error"]
    if node_major >= 6:  # Node 6 resumes by moving its legacy list, not by RENAME: nothing lost
        assert orphans == [] and await redis_client.lpos(f"{prefix}:{QUEUE}:wait", py_job) is not None
        return
    (finding,) = orphans
    assert code == 1 and finding["queue"] == QUEUE
    assert finding["message"].startswith(f"{QUEUE}: 1 job(s) are in no list or set of the queue")
    assert f"{py_job} (Job)" in finding["message"]

    code, out = await cli(redis_url, prefix, "repair", "--apply")
    assert code == 0, out
    assert f"{QUEUE} {py_job} (Job) -> wait: not finished" in out and "put back 1 of 1" in out

    worker = node.worker(QUEUE)
    await worker.astart()
    records = await worker.await_records(2)
    assert sorted(r["id"] for r in records) == sorted([node_job, py_job])
    assert {r["id"]: r["data"]["by"] for r in records} == {node_job: "node", py_job: "python"}


async def test_a_job_orphaned_while_node_5_keeps_the_queue_paused_goes_back_to_the_paused_list(
    node: Node, port_queue: Queue, redis_client: aioredis.Redis, redis_url: str, prefix: str, node_major: int
) -> None:
    if node_major >= 6:
        pytest.skip("only a Node bullmq < 6 parks jobs in the `paused` list")
    await node("touch", queue=QUEUE)
    await node("pause", queue=QUEUE)
    lost = str((await port_queue.add("Job", {"n": 1}, {})).id)
    await redis_client.lrem(f"{prefix}:{QUEUE}:wait", 0, lost)  # as a Node 5 resume would lose it
    code, out = await cli(redis_url, prefix, "repair", "--apply", "--queue", QUEUE)
    assert code == 0 and f"{QUEUE} {lost} (Job) -> paused" in out
    # Node 5's own resume then brings it back with its own paused jobs.
    await node("resume", queue=QUEUE)
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1) == [lost]


async def test_queue_stats_of_a_node_queue_equal_nodes_own_counts(
    node: Node, redis_url: str, prefix: str
) -> None:
    for i in range(3):
        await node("add-raw", queue=QUEUE, name="Job", data={"i": i}, opts={})
    await node("add-raw", queue=QUEUE, name="Job", data={}, opts={"priority": 5})
    await node("add-raw", queue=QUEUE, name="Job", data={}, opts={"delay": 60_000})
    failing = node.worker(QUEUE, fail_times=1, max_jobs=1)
    await failing.astart()
    await failing.await_exit()  # at least one waiting job failed (newer Node may fetch one more)
    await node("pause", queue=QUEUE)  # Node 5 moves `wait` to its `paused` list; Node 6 only flags

    counts: dict[str, Any] = await node("counts", queue=QUEUE)
    code, out = await cli(redis_url, prefix, "queue", "stats", "--json")
    assert code == 0, out
    ours = json.loads(out)["queues"][QUEUE]
    assert ours.pop("is_paused") is True
    assert ours == {state: counts[state] for state in ours}
    assert ours["failed"] >= 1 and ours["delayed"] == 1 and ours["waiting"] + ours["paused"] >= 1


async def test_queue_pause_is_refused_while_node_below_6_shares_the_queue(
    node: Node, redis_client: aioredis.Redis, redis_url: str, prefix: str, node_major: int
) -> None:
    await node("touch", queue=QUEUE)
    code, out = await cli(redis_url, prefix, "queue", "pause", QUEUE)
    paused = await redis_client.hexists(f"{prefix}:{QUEUE}:meta", "paused")
    if node_major < 6:
        assert code == 2 and "refusing to pause queue 'cron-queue'" in out and not paused
    else:
        assert code == 0 and paused
