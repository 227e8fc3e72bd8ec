"""One queue, two consumers: Twenty's Node worker and `twenty-jobs work --unknown-jobs leave`.

Python runs the job names it has handlers for and leaves every other job to Node without using
an attempt (docs/shared-queues.md). The Node side is the fixture's worker with `--handles`: it
runs only the names it has processors for and completes the others unrun, as Twenty's does.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from benchmarks.redis_server import PrivateRedis
from interop_tests.conftest import Node
from interop_tests.node import NodeWorker
from interop_tests.pyworker import PythonWorker, PythonWorkerProcess, Recorder, recording_handler
from twenty_jobs.runtime.config import UnknownJobs
from twenty_jobs.runtime.producer import Producer

QUEUE = "webhook-queue"
# Twenty's own names: Node-only ones (push subscriptions) and the ones the Python port takes over,
# which Twenty's Node worker also has processors for.
NODE_ONLY = ["CreateWebhookSubscriptionJob", "RenewWebhookSubscriptionJob"]
PYTHON = ["CallWebhookJobsJob", "CallWebhookJob"]
PER_NAME_PER_SIDE = 150  # 2 producers x 4 names x 150 = 1,200 jobs


def _items_file(items: list[dict[str, Any]]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(items, f)
        return f.name


async def _add_from_node(node: Node, name: str, count: int) -> list[str]:
    path = _items_file([{"data": {"from": "node", "name": name, "i": i}} for i in range(count)])
    try:
        added = await node("add-bulk", queue=QUEUE, name=name, items_file=path)
    finally:
        os.unlink(path)
    return list(added["ids"])


async def test_node_and_python_share_a_queue_each_name_runs_once_where_it_belongs(
    node: Node, producer: Producer, redis_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    names = [*NODE_ONLY, *PYTHON]
    python = PythonWorkerProcess(redis_url, prefix, QUEUE, PYTHON,
                                 extra_args=["--unknown-jobs", "leave", "--concurrency", "4"])
    node_worker = node.worker(QUEUE, handles=",".join([*NODE_ONLY, *PYTHON]))
    async with node_worker, python:
        started = time.monotonic()
        added = await asyncio.gather(
            *(_add_from_node(node, name, PER_NAME_PER_SIDE) for name in names),
            *(producer.add_bulk(QUEUE, name, [{"from": "python", "name": name, "i": i}
                                              for i in range(PER_NAME_PER_SIDE)]) for name in names),
        )
        ids_by_name: dict[str, set[str]] = {name: set() for name in names}
        for name, ids in zip([*names, *names], added, strict=True):
            ids_by_name[name] |= set(ids)
        expected = set().union(*ids_by_name.values())
        assert len(expected) == 2 * len(names) * PER_NAME_PER_SIDE == 1200

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(node_worker.records()) + len(python.records()) < len(expected):
            assert loop.time() < deadline, (
                f"{len(node_worker.records())} + {len(python.records())} of {len(expected)} jobs ran in 120 s: "
                f"{python.log[-2000:]}"
            )
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # a job run twice would show up now
        node_records, python_records = node_worker.records(), python.records()
        log = python.log

    assert not [r for r in node_records if r.get("unhandled")], "Node completed a job it has no processor for"
    ran = Counter(r["id"] for r in [*node_records, *python_records])
    assert set(ran) == expected, "lost jobs"
    assert max(ran.values()) == 1, "a job ran twice"
    node_only = ids_by_name[NODE_ONLY[0]] | ids_by_name[NODE_ONLY[1]]
    # Node-only jobs ran on Node only, each on its first attempt; no job of either kind was retried.
    assert not node_only & {r["id"] for r in python_records}
    assert node_only <= {r["id"] for r in node_records}
    assert all(r["attemptsMade"] == 0 for r in [*node_records, *python_records])

    counts = await node("counts", queue=QUEUE)
    assert counts["failed"] == 0
    assert counts["waiting"] + counts["prioritized"] + counts["active"] + counts["delayed"] == 0
    # The completed jobs Twenty's retention keeps (1,000): a Node-only job Python fetched and left
    # (ats > 1) still completed with attemptsMade 1 and no failure recorded.
    retained = await redis_client.zrange(f"{prefix}:{QUEUE}:completed", 0, -1)
    left_then_run = 0
    for job_id in set(retained) & node_only:
        fields = await redis_client.hmget(f"{prefix}:{QUEUE}:{job_id}", ["atm", "ats", "failedReason"])
        assert fields[0] == "1" and fields[2] is None, (job_id, fields)
        left_then_run += int(fields[1]) > 1
    assert left_then_run > 0, "Python never fetched a Node-only job: the test did not exercise leave"
    assert "Traceback" not in log
    print(f"\nshared queue: {len(expected)} jobs in {elapsed:.1f} s (adds included); Node ran {len(node_records)}, "
          f"Python {len(python_records)}; {left_then_run} Node-only jobs were fetched and left by Python first")


def _calls(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


async def test_with_no_node_consumer_left_jobs_wait_without_looping_and_run_once_node_starts(
    tmp_path: Path,
) -> None:
    server = PrivateRedis(tmp_path)
    url = server.start()
    prefix = "shared"
    counter = redis.Redis.from_url(url)
    recorder = Recorder()
    node_worker = NodeWorker(QUEUE, prefix=prefix, redis_url=url, handles=",".join(NODE_ONLY))
    try:
        async with Producer(url, prefix=prefix, allow_any_queue=True) as producer:
            async with PythonWorker(url, prefix, QUEUE, {PYTHON[0]: recording_handler(recorder)},
                                    unknown_jobs=UnknownJobs.LEAVE, concurrency=4) as worker:
                node_ids = await producer.add_bulk(QUEUE, NODE_ONLY[0], [{"i": i} for i in range(50)])
                await producer.add_bulk(QUEUE, PYTHON[0], [{"i": i} for i in range(20)])
                await recorder.wait_for(20, timeout=20)
                # Every Node-only job is parked in `delayed`, none failed, no attempt used.
                client = aioredis.Redis.from_url(url, decode_responses=True)
                try:
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + 20
                    while await client.zcard(f"{prefix}:{QUEUE}:delayed") < 50:
                        assert loop.time() < deadline, "the Node-only jobs were not all left in delayed"
                        await asyncio.sleep(0.05)
                    assert await client.zcard(f"{prefix}:{QUEUE}:failed") == 0
                    for job_id in node_ids:
                        assert await client.hget(f"{prefix}:{QUEUE}:{job_id}", "atm") in (None, "0")

                    # Waiting costs next to nothing: count every command Redis runs for 4 s.
                    before, started = _calls(counter), time.monotonic()
                    await asyncio.sleep(4)
                    calls = _calls(counter) - before - 1
                    per_second = calls / (time.monotonic() - started)
                    assert per_second < 10, f"{calls} Redis commands in 4 s while jobs wait for Node"
                    assert await client.zcard(f"{prefix}:{QUEUE}:delayed") == 50

                    # Node starts: the waiting jobs are promoted and run there, once each, first attempt.
                    await node_worker.astart()
                    records = await node_worker.await_records(50, timeout=20)
                    await asyncio.sleep(0.5)
                    records = node_worker.records()
                finally:
                    await client.aclose()
                assert worker.worker.exit_code == 0
        assert sorted(r["id"] for r in records) == sorted(node_ids)
        assert all(not r.get("unhandled") and r["attemptsMade"] == 0 for r in records)
        assert len(recorder.records) == 20
        print(f"\nwaiting for Node: {calls} Redis commands in 4 s ({per_second:.1f}/s) with 50 jobs left waiting")
    finally:
        if node_worker.proc is not None:
            node_worker.stop()
        counter.close()
        server.stop()


async def test_worker_warns_when_node_shares_a_queue_with_names_only_python_handles(
    node: Node, redis_url: str, prefix: str
) -> None:
    # Twenty's Node worker completes, unrun, the jobs it has no processor for: here MyOwnJob.
    async with node.worker(QUEUE, handles=",".join(NODE_ONLY)) as node_worker:
        python = PythonWorkerProcess(redis_url, prefix, QUEUE, ["MyOwnJob", *PYTHON],
                                     extra_args=["--unknown-jobs", "leave"])
        async with python:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "MyOwnJob" not in python.log:
                assert loop.time() < deadline, python.log
                await asyncio.sleep(0.05)
            log = python.log
            await _add_from_node(node, "MyOwnJob", 40)
            await asyncio.sleep(2)
            unrun = [r for r in node_worker.records() if r.get("unhandled")]
    assert "jobs named MyOwnJob (handled only here) may be lost" in log
    assert "CallWebhookJob" not in log.split("jobs named", 1)[1].split("(handled", 1)[0]
    # The hazard the warning is about: some of them were taken by Node and completed unrun.
    assert unrun, "Node took none of the 40 jobs (the hazard did not show; nothing to warn about?)"
