"""The mixed-version guard (twenty_jobs/wire/compat.py) against real Node bullmq: the version it
reads, the pause/resume refusal and the data loss it prevents, the deferred-failure difference its
warning describes, and legacy repeatable jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from interop_tests.conftest import Node
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.wire.compat import (
    NodeVersion,
    PauseResumeRefused,
    check_queue,
    find_legacy_repeatables,
    node_major_below_6,
    read_node_version,
    refuse_pause_resume,
)

QUEUE = "cron-queue"  # cron iterations (no priority) live in the `wait` list, where the hazard is


@pytest.fixture
def node_version(node_bullmq_version: str) -> NodeVersion:
    version = NodeVersion.parse(node_bullmq_version)
    assert version is not None
    return version


@pytest.fixture
async def py_queue(redis_url: str, prefix: str) -> AsyncIterator[Queue]:
    queue = Queue(QUEUE, {"connection": redis_url, "prefix": prefix})
    yield queue
    await queue.close()


async def _listed_ids(redis_client: aioredis.Redis, prefix: str, queue: str = QUEUE) -> set[str]:
    """Every job id in a list or set a worker can still reach."""
    key = f"{prefix}:{queue}"
    ids: set[str] = set()
    for name in ("wait", "paused", "active"):
        ids.update(await redis_client.lrange(f"{key}:{name}", 0, -1))
    for name in ("prioritized", "delayed"):
        ids.update(await redis_client.zrange(f"{key}:{name}", 0, -1))
    return ids


async def test_the_node_version_is_read_from_a_queue_node_created(
    node: Node, redis_client: aioredis.Redis, prefix: str, node_bullmq_version: str
) -> None:
    assert await read_node_version(redis_client, prefix, QUEUE) is None
    meta = (await node("touch", queue=QUEUE))["meta"]
    assert meta["version"] == f"bullmq:{node_bullmq_version}"
    version = await read_node_version(redis_client, prefix, QUEUE)
    assert version is not None and str(version) == node_bullmq_version
    assert node_major_below_6(version) is (int(node_bullmq_version.split(".")[0]) < 6)


async def test_python_pause_is_refused_with_node_below_6_and_no_job_is_lost(
    node: Node, producer: Producer, redis_client: aioredis.Redis, redis_url: str, prefix: str,
    py_queue: Queue, node_version: NodeVersion,
) -> None:
    await node("touch", queue=QUEUE)  # a Twenty server has opened the queue
    ids = [(await node("add-raw", queue=QUEUE, name="Job", data={"by": "node", "i": i}, opts={}))["id"]
           for i in range(2)]

    if node_version.below_6:
        with pytest.raises(PauseResumeRefused, match=f"Node bullmq {node_version}"):
            await refuse_pause_resume(redis_client, prefix, QUEUE, action="pause")
        python_paused = False
    else:
        assert await refuse_pause_resume(redis_client, prefix, QUEUE, action="pause") == node_version
        await py_queue.pause()
        python_paused = True
    assert bool(await redis_client.hexists(f"{prefix}:{QUEUE}:meta", "paused")) is python_paused

    # Both sides keep adding; then Twenty (Node) resumes, the way an operator would.
    ids += [(await node("add-raw", queue=QUEUE, name="Job", data={"by": "node", "i": i}, opts={}))["id"]
            for i in (2, 3)]
    ids += [str(await producer.add(QUEUE, "Job", {"by": "python", "i": i}, priority=0)) for i in (4, 5)]
    if not python_paused:
        await node("pause", queue=QUEUE)  # a Node-only pause/resume cycle is safe
    assert (await node("resume", queue=QUEUE))["paused"] is False

    assert await _listed_ids(redis_client, prefix) == set(ids)
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(recorder)}):
        await recorder.wait_for(6)
    assert sorted(recorder.ids()) == sorted(ids)


async def test_python_jobs_added_while_node_pauses_survive_its_resume_and_run(
    node: Node, producer: Producer, redis_client: aioredis.Redis, redis_url: str, prefix: str,
) -> None:
    # Node (bull-board's Pause button, an admin script) pauses; twenty-jobs enqueues; Node resumes.
    # Node 5's resume RENAMEs `paused` over `wait`: the producer writes plain jobs where Node 5
    # would (the `paused` list), so they survive it (docs/mixed-versions.md).
    await node("touch", queue=QUEUE)
    before = [(await node("add-raw", queue=QUEUE, name="Job", data={"i": i}, opts={}))["id"] for i in range(2)]
    await node("pause", queue=QUEUE)
    py_ids = [str(await producer.add(QUEUE, "Job", {"i": i}, priority=0)) for i in (2, 3)]
    py_ids += await producer.add_bulk(QUEUE, "Job", [{"i": 4}, {"i": 5}], priority=0)
    assert (await node("resume", queue=QUEUE))["paused"] is False

    assert await _listed_ids(redis_client, prefix) == {*before, *py_ids}
    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(recorder)}):
        await recorder.wait_for(6)
    assert sorted(recorder.ids()) == sorted([*before, *py_ids])


async def test_jobs_python_adds_after_a_forced_python_pause_survive_a_node_resume(
    node: Node, producer: Producer, redis_client: aioredis.Redis, prefix: str, py_queue: Queue,
    node_version: NodeVersion,
) -> None:
    await node("touch", queue=QUEUE)
    assert await refuse_pause_resume(redis_client, prefix, QUEUE, force=True) == node_version
    await py_queue.pause()
    node_ids = [(await node("add-raw", queue=QUEUE, name="Job", data={"i": i}, opts={}))["id"] for i in range(2)]
    py_ids = [str(await producer.add(QUEUE, "Job", {"i": i}, priority=0)) for i in (2, 3)]
    if node_version.below_6:  # written where Node 5 writes while paused
        assert set(await redis_client.lrange(f"{prefix}:{QUEUE}:paused", 0, -1)) >= set(py_ids)
    await node("resume", queue=QUEUE)
    listed = await _listed_ids(redis_client, prefix)
    assert set(node_ids) | set(py_ids) <= listed


async def test_node_below_5_49_2_runs_a_job_the_python_stall_checker_failed(
    node: Node, redis_client: aioredis.Redis, prefix: str, py_queue: Queue, node_version: NodeVersion,
) -> None:
    # The startup warning's `defa` paragraph, proven: the port's stall checker (maxStalledCount 0)
    # defers the failure to the fetching worker; Node < 5.49.2 runs the job instead of failing it.
    job_id = (await node("add-raw", queue=QUEUE, name="Stuck", data={}, opts={}))["id"]
    victim = node.worker(QUEUE, sleep_ms=60_000, lock_duration=1000, stalled_interval=1000)
    await victim.astart()
    await victim.await_records(1)
    victim.kill()  # the job stays active; its lock and the victim's stall-check window expire in 1 s
    await asyncio.sleep(1.2)

    # The port's stall checker, as a Python worker runs it: the first pass makes active jobs
    # suspects, the next one moves suspects without a lock (over maxStalledCount 0: marked `defa`).
    for _ in range(2):
        await py_queue.scripts.moveStalledJobsToWait(0, 100)
        await asyncio.sleep(0.15)
    raw = await redis_client.hgetall(f"{prefix}:{QUEUE}:{job_id}")
    assert raw.get("defa") == "job stalled more than allowable limit"
    assert await redis_client.lrange(f"{prefix}:{QUEUE}:wait", 0, -1) == [job_id]

    async with node.worker(QUEUE, max_jobs=1) as worker:
        await worker.await_exit(15)
        records = worker.records()
    view = await node("inspect-job", queue=QUEUE, id=job_id)
    if node_version.honours_deferred_failure:
        assert view["state"] == "failed"
        assert view["failedReason"] == "job stalled more than allowable limit"
        assert records == []
    else:
        assert view["state"] == "completed"  # ran again instead of failing
        assert [r["id"] for r in records] == [job_id]


async def test_legacy_repeatables_made_by_node_are_detected(
    node: Node, redis_client: aioredis.Redis, prefix: str, node_version: NodeVersion,
) -> None:
    await node("add-cron", queue=QUEUE, name="SchedulerJob", pattern="0 * * * *")  # Twenty's addCron
    await node("add-raw", queue=QUEUE, name="LegacyJob", data={"a": 1},
               opts={"repeat": {"pattern": "*/5 * * * *"}, "removeOnComplete": 100})  # Twenty's old driver
    await node("add-raw", queue=QUEUE, name="LegacyEvery", data={},
               opts={"jobId": "ws-1", "repeat": {"every": 60000}})

    legacy = await find_legacy_repeatables(redis_client, prefix, QUEUE)
    report = await check_queue(redis_client, prefix, QUEUE)
    if node_version.below_6:
        assert sorted((r.name, r.shape, r.pattern, r.every_ms) for r in legacy) == [
            ("LegacyEvery", "md5", None, 60000), ("LegacyJob", "md5", "*/5 * * * *", None),
        ]
        assert report.warning is not None and "LegacyJob (pattern '*/5 * * * *')" in report.warning
        repeatables = await node("repeatables", queue=QUEUE)
        assert sorted(r["key"] for r in repeatables["repeatables"] if r["name"].startswith("Legacy")) == sorted(
            r.key for r in legacy
        )
    else:
        # bullmq 6 dropped the `repeat` option: it silently adds a plain job, nothing repeats.
        assert legacy == []
        assert (await node("repeatables", queue=QUEUE))["supported"] is False
        assert report.warning is None
    assert report.node_below_6 is node_version.below_6
