"""Orphaned jobs (job hashes in no list or set of their queue): `doctor` finds them, `repair`
says where each goes and, with `--apply`, puts it back, and a worker then runs it. Real Redis;
the orphans are made by taking a job's id out of its state key, which is what a Node bullmq 5
resume does to jobs a newer BullMQ added while it had the queue paused (the real thing, with Node
5.40.0, is in interop_tests/test_orphans.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from typer.testing import CliRunner

from tests.conftest import REDIS_URL, RunningWorker, wait_until
from twenty_jobs.cli.app import app
from twenty_jobs.errors import PermanentJobError
from twenty_jobs.observability.heartbeat import now_ms
from twenty_jobs.ops.orphans import find_orphans
from twenty_jobs.ops.queues import pause_queue
from twenty_jobs.ops.repair import RepairLocked, repair_orphans
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job
from twenty_jobs.wire.keys import heartbeat_key, repair_lock_key

Q = "orphans-queue"
StartWorker = Callable[..., Awaitable[RunningWorker]]
runner = CliRunner()


async def cli(prefix: str, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--redis-url", REDIS_URL, "--prefix", prefix])
    return result.exit_code, result.output


async def orphan(redis: aioredis.Redis, prefix: str, job_id: str, *states: str) -> str:
    """Take `job_id` out of its state keys: its hash stays, no worker can reach it any more."""
    for state in states:
        key = f"{prefix}:{Q}:{state}"
        if await redis.type(key) == "list":
            await redis.lrem(key, 0, job_id)
        else:
            await redis.zrem(key, job_id)
    return job_id


async def where(redis: aioredis.Redis, prefix: str, job_id: str) -> dict[str, Any]:
    """Every state key of Q holding `job_id`, with its score for sorted sets."""
    found: dict[str, Any] = {}
    for state in ("wait", "paused", "active"):
        if await redis.lpos(f"{prefix}:{Q}:{state}", job_id) is not None:
            found[state] = None
    for state in ("prioritized", "delayed", "completed", "failed", "waiting-children"):
        score = await redis.zscore(f"{prefix}:{Q}:{state}", job_id)
        if score is not None:
            found[state] = score
    return found


async def finished_job(
    start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str, *, fail: bool
) -> str:
    @job(Q, "Finish", registry=registry)
    async def finish(data: Any, ctx: JobContext) -> str:
        if fail:
            raise PermanentJobError("no")
        return "done"

    job_id = str(await producer.add(Q, "Finish", {}))
    rw = await start_worker([Q])
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        state = "failed" if fail else "completed"
        await wait_until(lambda: client.zscore(f"{prefix}:{Q}:{state}", job_id))
    finally:
        await client.aclose()
    await rw.stop()
    registry.remove(Q, "Finish")
    return job_id


async def test_doctor_finds_orphans_and_repair_puts_each_where_its_hash_says(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    completed = await orphan(redis, prefix, await finished_job(start_worker, registry, producer, prefix, fail=False),
                             "completed")
    failed = await orphan(redis, prefix, await finished_job(start_worker, registry, producer, prefix, fail=True),
                          "failed")
    waiting = await orphan(redis, prefix, str(await producer.add(Q, "Run", {"n": 1})), "wait")
    prioritized = await orphan(redis, prefix, str(await producer.add(Q, "Run", {"n": 2}, priority=7)), "prioritized")
    delayed = await orphan(redis, prefix, str(await producer.add(Q, "Run", {"n": 3}, delay=3_600_000)), "delayed")
    locked = await orphan(redis, prefix, str(await producer.add(Q, "Run", {"n": 4})), "wait")
    await redis.hset(f"{prefix}:{Q}:{locked}", "processedOn", str(now_ms()))
    await redis.set(f"{prefix}:{Q}:{locked}:lock", "a-worker-token", px=60_000)
    broken = await orphan(redis, prefix, str(await producer.add(Q, "Run", {"n": 5})), "wait")
    await redis.hset(f"{prefix}:{Q}:{broken}", "opts", "[1]")
    healthy = str(await producer.add(Q, "Run", {"n": 6}))  # still in `wait`: not an orphan
    timestamps = {j: int(await redis.hget(f"{prefix}:{Q}:{j}", "timestamp")) for j in (delayed,)}

    code, out = await cli(prefix, "doctor", "--json")
    report = json.loads(out)
    (finding,) = [f for f in report["findings"] if f["code"] == "orphaned_jobs"]
    assert code == 1 and finding["severity"] == "error" and finding["queue"] == Q
    assert finding["message"].startswith(f"{Q}: 7 job(s) are in no list or set of the queue")
    assert f"twenty-jobs repair --queue {Q} --prefix {prefix}" in finding["fix"]

    code, out = await cli(prefix, "repair", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["applied"] is False and dry["orphans"] == 7 and dry["repaired"] == 0
    planned = {a["job_id"]: a["state"] for a in dry["actions"]}
    assert planned == {completed: "completed", failed: "failed", waiting: "wait", prioritized: "prioritized",
                       delayed: "delayed", locked: "active", broken: None}
    assert healthy not in planned
    assert await where(redis, prefix, waiting) == {}  # a dry run changes nothing

    code, out = await cli(prefix, "repair", "--queue", Q, "--apply")
    assert code == 1, out  # the unreadable one is left alone, and said so
    assert f"{Q} {broken} (Run) left alone: job {broken} ('Run') cannot be run: field 'opts' is not a JSON " in out
    assert "put back 6 of 7 orphaned job(s)" in out

    finished_on = {j: int(await redis.hget(f"{prefix}:{Q}:{j}", "finishedOn")) for j in (completed, failed)}
    assert await where(redis, prefix, completed) == {"completed": finished_on[completed]}
    assert await where(redis, prefix, failed) == {"failed": finished_on[failed]}
    assert await where(redis, prefix, waiting) == {"wait": None}
    assert (await where(redis, prefix, prioritized))["prioritized"] // 0x100000000 == 7
    assert await where(redis, prefix, delayed) == {"delayed": (timestamps[delayed] + 3_600_000) * 0x1000}
    assert await where(redis, prefix, locked) == {"active": None}
    # The marker that wakes blocked workers (Node and Python) for the waiting job.
    assert await redis.zscore(f"{prefix}:{Q}:marker", "0") == 0
    assert not await redis.exists(repair_lock_key(prefix, Q))

    code, out = await cli(prefix, "repair", "--queue", Q)
    assert code == 0 and "dry run: 1 orphaned job(s) found" in out  # only the unreadable one

    # A worker runs the jobs that were lost.
    seen: list[int] = []

    @job(Q, "Run", registry=registry)
    async def run(data: Any, ctx: JobContext) -> None:
        seen.append(data["n"])

    await start_worker([Q])
    await wait_until(lambda: sorted(seen) == [1, 2, 6])


async def test_keys_that_are_not_job_hashes_are_never_orphans(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    job_id = str(await producer.add(Q, "Run", {}))
    base = f"{prefix}:{Q}"
    await redis.set(heartbeat_key(prefix, Q, "host:1:abc"), "{}")
    await redis.set(repair_lock_key(prefix, Q), "token")
    await redis.zadd(f"{base}:repeat", {"every-minute": 1})
    await redis.hset(f"{base}:repeat:every-minute", mapping={"name": "Cron", "every": "60000"})
    await redis.zadd(f"{base}:repeat", {"legacy:x:123": 2})  # a scheduler id shaped like a job's
    await redis.hset(f"{base}:repeat:legacy:x:123", mapping={"name": "Cron", "every": "1"})
    await redis.set(f"{base}:de:some-dedupe-id", job_id)
    await redis.rpush(f"{base}:{job_id}:logs", "a log line")
    await redis.set(f"{base}:{job_id}:lock", "token")
    await redis.xadd(f"{base}:events", {"event": "added"})
    await redis.hset(f"{base}:metrics:completed", "count", "1")
    await redis.hset(f"{prefix}:{Q}:sub:7", mapping={"name": "Other", "timestamp": "1"})  # queue "orphans-queue:sub"
    await redis.set(f"{base}:stalled-check", "1")

    scan = await find_orphans(redis, prefix, [Q])
    assert scan.count == 0 and scan.progress.complete

    await redis.lrem(f"{base}:wait", 0, job_id)
    await redis.hset(f"{base}:repeat:x:123", mapping={"name": "Run", "timestamp": "1", "data": "{}", "opts": "{}"})
    scan = await find_orphans(redis, prefix, [Q])
    # The job, and a job hash a scheduler made (`repeat:<id>:<millis>`) that is in no state.
    assert sorted(o.job_id for o in scan.sample) == sorted([job_id, "repeat:x:123"])


async def test_the_scan_is_bounded_and_counts_every_orphan(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    ids = [str(await producer.add(Q, "Run", {"i": i})) for i in range(30)]
    await redis.delete(f"{prefix}:{Q}:wait")

    full = await find_orphans(redis, prefix, [Q], scan_count=7, sample=5)
    assert full.count == 30 and full.by_queue == {Q: 30} and full.progress.complete
    assert len(full.sample) == 5 and {o.job_id for o in full.sample} <= set(ids)
    assert all(o.name == "Run" for o in full.sample)

    partial = await find_orphans(redis, prefix, [Q], scan_count=7, max_keys=10)
    assert not partial.progress.complete and partial.progress.keys_examined == 10
    assert partial.count <= 10

    _, out = await cli(prefix, "doctor", "--json")
    (finding,) = [f for f in json.loads(out)["findings"] if f["code"] == "orphaned_jobs"]
    assert finding["message"].startswith(f"{Q}: 30 job(s)") and finding["message"].count("(Run)") == 5


async def test_a_paused_queue_gets_its_orphans_back_in_the_paused_list(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    # Every BullMQ resume (Node 5 and 6) moves the legacy `paused` list to `wait`; a Node 5 resume
    # would overwrite jobs put in `wait` instead.
    job_id = await orphan(redis, prefix, str(await producer.add(Q, "Run", {})), "wait")
    await pause_queue(redis, prefix, Q)
    report = await repair_orphans(redis, prefix, [Q], apply=True)
    assert [(a.job_id, a.state, a.done) for a in report.actions] == [(job_id, "paused", True)]
    assert await where(redis, prefix, job_id) == {"paused": None}
    assert await redis.zcard(f"{prefix}:{Q}:marker") == 0  # no wake-up on a paused queue


async def test_two_repairs_never_run_at_once(producer: Producer, redis: aioredis.Redis, prefix: str) -> None:
    await orphan(redis, prefix, str(await producer.add(Q, "Run", {})), "wait")
    await redis.set(repair_lock_key(prefix, Q), "someone-else", px=60_000)
    try:
        await repair_orphans(redis, prefix, [Q], apply=True)
    except RepairLocked as exc:
        assert "another `twenty-jobs repair --apply` is running on queue 'orphans-queue'" in str(exc)
    else:
        raise AssertionError("a second repair ran beside the first")
    code, out = await cli(prefix, "repair", "--apply")
    assert code == 1 and out.count("\n") == 1 and "another `twenty-jobs repair --apply`" in out
    assert (await repair_orphans(redis, prefix, [Q])).actions  # a dry run needs no lock
    assert await redis.get(repair_lock_key(prefix, Q)) == "someone-else"  # never someone else's lock
