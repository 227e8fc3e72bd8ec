"""`twenty-jobs queue stats|pause|resume|drain|clean|obliterate` and `failed list` across queues,
through the real CLI against the real local Redis (stats of a queue Node bullmq wrote, and the
mixed-version guard against a real Node 5.40 pause, are in interop_tests/test_orphans.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from tests.conftest import REDIS_URL, RunningWorker, wait_until
from twenty_jobs.cli import queue_control as queue_cli
from twenty_jobs.cli.app import app
from twenty_jobs.errors import PermanentJobError
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job

Q = "app-queue"  # a queue of "another BullMQ application": no Twenty priority, jobs go to `wait`
StartWorker = Callable[..., Awaitable[RunningWorker]]
runner = CliRunner()


async def cli(prefix: str, *args: str, input: str | None = None) -> Result:
    return await asyncio.to_thread(
        runner.invoke, app, [*args, "--redis-url", REDIS_URL, "--prefix", prefix], input=input
    )


async def stats(prefix: str) -> dict[str, Any]:
    result = await cli(prefix, "queue", "stats", "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


async def run_jobs(start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str) -> None:
    """Two completed and one failed job on Q, through a real worker."""

    @job(Q, "Work", registry=registry)
    async def work(data: Any, ctx: JobContext) -> None:
        if data.get("fail"):
            raise PermanentJobError("no")

    for data in ({}, {}, {"fail": True}):
        await producer.add(Q, "Work", data)
    rw = await start_worker([Q])
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await wait_until(lambda: client.zcard(f"{prefix}:{Q}:failed"))
        await wait_until(lambda: _is(client.zcard(f"{prefix}:{Q}:completed"), 2))
    finally:
        await client.aclose()
    await rw.stop()
    registry.remove(Q, "Work")


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_stats_count_every_state_of_every_queue(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await run_jobs(start_worker, registry, producer, prefix)
    await producer.add(Q, "Work", {})
    await producer.add(Q, "Work", {}, priority=3)
    await producer.add(Q, "Work", {}, delay=60_000)
    await producer.add("email-queue", "EmailSenderJob", {})
    await redis.rpush(f"{prefix}:{Q}:paused", "legacy-1")  # what a Node 5 pause leaves behind

    document = await stats(prefix)
    assert document["prefix"] == prefix and document["at"] > 0
    assert list(document["queues"]) == ["email-queue", Q]  # Twenty's queues first
    assert document["queues"][Q] == {
        "waiting": 1, "active": 0, "completed": 2, "failed": 1, "delayed": 1, "paused": 1, "prioritized": 1,
        "is_paused": False,
    }
    table = await cli(prefix, "queue", "stats")
    assert table.exit_code == 0 and Q in table.output and "running" in table.output

    assert (await cli(prefix, "queue", "pause", Q)).output == f"{Q}: paused\n"
    assert (await stats(prefix))["queues"][Q]["is_paused"] is True
    assert "paused" in (await cli(prefix, "queue", "stats", "-q", Q)).output


async def test_pause_and_resume_are_guarded_against_node_below_6(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add(Q, "Work", {})
    await redis.hset(f"{prefix}:{Q}:meta", "version", "bullmq:5.40.0")  # a Twenty server opened Q
    refused = await cli(prefix, "queue", "pause", Q)
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert f"refusing to pause queue '{Q}' from Python: Node bullmq 5.40.0" in refused.output
    assert not await redis.hexists(f"{prefix}:{Q}:meta", "paused")

    assert (await cli(prefix, "queue", "pause", Q, "--force")).exit_code == 0
    assert await redis.hexists(f"{prefix}:{Q}:meta", "paused")
    assert (await cli(prefix, "queue", "resume", Q)).exit_code == 2
    # A resume moves what Node 5 parked in its `paused` list back to `wait`.
    await redis.rpush(f"{prefix}:{Q}:paused", *[f"parked-{i}" for i in range(3)])
    resumed = await cli(prefix, "queue", "resume", Q, "--force", "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.output) == {"queue": Q, "paused": False}
    assert not await redis.hexists(f"{prefix}:{Q}:meta", "paused")
    assert await redis.llen(f"{prefix}:{Q}:paused") == 0 and await redis.llen(f"{prefix}:{Q}:wait") == 4
    # The older top-level commands run the same code.
    assert (await cli(prefix, "pause", "email-queue")).exit_code == 0
    assert await redis.hexists(f"{prefix}:email-queue:meta", "paused")


async def test_destructive_commands_refuse_without_a_terminal_or_yes(producer: Producer, prefix: str) -> None:
    await producer.add(Q, "Work", {})
    for args in (["drain", Q], ["clean", Q], ["obliterate", Q]):
        result = await cli(prefix, "queue", *args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "pass --yes to confirm (no terminal to ask on)" in result.output
    assert (await stats(prefix))["queues"][Q]["waiting"] == 1


async def test_a_terminal_is_asked_and_no_means_nothing_is_done(
    producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_cli, "_can_ask", lambda: True)
    await producer.add(Q, "Work", {})
    declined = await cli(prefix, "queue", "drain", Q, input="n\n")
    assert declined.exit_code == 1 and "nothing done" in declined.output
    assert (await stats(prefix))["queues"][Q]["waiting"] == 1
    accepted = await cli(prefix, "queue", "drain", Q, input="y\n")
    assert accepted.exit_code == 0 and f"{Q}: drained, 1 job(s) deleted" in accepted.output


async def test_drain_deletes_jobs_waiting_to_run_and_keeps_the_rest(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await run_jobs(start_worker, registry, producer, prefix)
    waiting = [str(await producer.add(Q, "Work", {"i": i})) for i in range(3)]
    await producer.add(Q, "Work", {}, priority=2)
    delayed = str(await producer.add(Q, "Work", {}, delay=60_000))
    await producer.add_cron(Q, "Nightly", {}, pattern="0 3 * * *")  # its next run is a delayed job

    result = await cli(prefix, "queue", "drain", Q, "--yes")
    assert result.exit_code == 0 and f"{Q}: drained, 4 job(s) deleted" in result.output
    after = (await stats(prefix))["queues"][Q]
    assert (after["waiting"], after["prioritized"], after["delayed"]) == (0, 0, 2)
    assert (after["completed"], after["failed"]) == (2, 1)
    assert not any([await redis.exists(f"{prefix}:{Q}:{j}") for j in waiting])  # hashes too

    result = await cli(prefix, "queue", "drain", Q, "--delayed", "--yes", "--json")
    assert json.loads(result.output) == {"queue": Q, "removed": 1}
    assert await redis.zscore(f"{prefix}:{Q}:delayed", delayed) is None
    assert (await stats(prefix))["queues"][Q]["delayed"] == 1  # the cron's next run stays


async def test_clean_deletes_old_finished_jobs_by_state(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await run_jobs(start_worker, registry, producer, prefix)
    bad = await cli(prefix, "queue", "clean", Q, "--state", "done", "--yes")
    assert bad.exit_code == 2 and "cannot clean 'done'" in bad.output
    kept = await cli(prefix, "queue", "clean", Q, "--older-than", "1h", "--yes", "--json")
    assert json.loads(kept.output.splitlines()[-1]) == {"queue": Q, "removed": {"completed": 0, "failed": 0}}

    only_failed = await cli(prefix, "queue", "clean", Q, "--state", "failed", "--yes")
    assert only_failed.exit_code == 0 and f"{Q}: removed 1 failed job(s)" in only_failed.output
    assert (await stats(prefix))["queues"][Q]["completed"] == 2
    everything = await cli(prefix, "queue", "clean", Q, "--yes", "--batch", "1")
    assert f"{Q}: removed 2 completed, 0 failed job(s)" in everything.output
    assert (await stats(prefix))["queues"][Q]["completed"] == 0


async def test_obliterate_deletes_the_queue_and_refuses_while_jobs_run(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await run_jobs(start_worker, registry, producer, prefix)
    for i in range(5):
        await producer.add(Q, "Work", {"i": i})
    await redis.lpush(f"{prefix}:{Q}:active", "running-1")  # a job some worker holds
    refused = await cli(prefix, "queue", "obliterate", Q, "--yes")
    assert refused.exit_code == 2 and f"queue '{Q}' has 1 active job(s)" in refused.output
    assert not await redis.hexists(f"{prefix}:{Q}:meta", "paused")  # refused before pausing

    done = await cli(prefix, "queue", "obliterate", Q, "--yes", "--force", "--batch", "2")
    assert done.exit_code == 0, done.output
    assert f"{Q}: obliterated, 9 job(s) deleted" in done.output
    assert [k async for k in redis.scan_iter(match=f"{prefix}:{Q}:*")] == []
    assert Q not in (await stats(prefix))["queues"]


async def test_failed_list_without_a_queue_lists_every_queue(
    start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str
) -> None:
    await run_jobs(start_worker, registry, producer, prefix)
    await producer.add("email-queue", "EmailSenderJob", {})  # a queue with no failed job
    result = await cli(prefix, "failed", "list", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)["queues"]
    assert entry["queue"] == Q and entry["total"] == 1 and entry["jobs"][0]["failed_reason"] == "no"
    table = await cli(prefix, "failed", "list")
    assert f"{Q}: 1 of 1 failed job(s)" in table.output and "email-queue" not in table.output
    empty = await cli(f"{prefix}-empty", "failed", "list")
    assert empty.exit_code == 0 and "no failed jobs on any queue under this prefix" in empty.output
