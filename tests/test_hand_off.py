"""`--unknown-jobs leave`: jobs with no handler here (or handed off by their handler) go back to
the queue for another consumer without using an attempt; with no other consumer connected they
wait, and are made due when one connects. Real Redis; "another consumer" is a connection named as
Node's workers name theirs (interop_tests/test_shared_queue.py runs the real Node worker)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from benchmarks.redis_server import PrivateRedis
from twenty_jobs.errors import HandOffJob
from twenty_jobs.observability.heartbeat import Heartbeat, read_heartbeats
from twenty_jobs.runtime import hand_off
from twenty_jobs.runtime.config import UnknownJobs
from twenty_jobs.runtime.events import EventListener, JobEvent
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker
from twenty_jobs.twenty.jobs import PORTED_JOBS, python_only_names
from twenty_jobs.wire.keys import twenty_jobs_client_name, worker_client_name

from .conftest import REDIS_URL, RunningWorker, wait_until, worker_config

Q = "webhook-queue"
NODE_JOB = "CreateWebhookSubscriptionJob"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def node_connection(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A connection named as a Twenty (unnamed Node) worker of Q names its blocking connection."""
    client = aioredis.Redis.from_url(redis_url, client_name=worker_client_name(prefix, Q))
    await client.ping()
    yield client
    await client.aclose()


def own_jobs(registry: Registry, ran: list[Any], *names: str) -> None:
    for name in names:
        async def handler(data: Any, ctx: Any) -> None:
            ran.append(data)

        twenty_jobs.job(queue=Q, name=name, registry=registry)(handler)


async def job_fields(redis: aioredis.Redis, prefix: str, job_id: str, *fields: str) -> list[str | None]:
    return list(await redis.hmget(f"{prefix}:{Q}:{job_id}", list(fields)))


def test_sit_out_doubles_up_to_a_cap_longer_when_nobody_else_is_connected() -> None:
    shared = [hand_off.sit_out_ms(n, True) for n in range(8)]
    alone = [hand_off.sit_out_ms(n, False) for n in range(6)]
    assert shared == [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]
    assert alone == [30_000, 60_000, 120_000, 240_000, 300_000, 300_000]
    assert hand_off.sit_out_ms(10**6, False) == hand_off.ALONE_CAP_MS


def test_python_only_names_are_the_names_twenty_has_no_handler_for() -> None:
    assert python_only_names(Q, ["CallWebhookJob", "MyOwnJob", NODE_JOB]) == ["MyOwnJob"]
    assert python_only_names("email-queue", ["EmailSenderJob"]) == []
    assert python_only_names("my-app-queue", ["MyOwnJob"]) == []  # not Twenty's queue: no Twenty worker


def test_ported_jobs_table_lists_exactly_the_builtin_handlers() -> None:
    import twenty_jobs.jobs.email
    import twenty_jobs.jobs.webhook  # registers the handlers

    registered = {q: set(twenty_jobs.default_registry.names(q)) for q in PORTED_JOBS}
    assert registered == {q: set(names) for q, names in PORTED_JOBS.items()}


async def test_alone_unknown_job_waits_in_delayed_without_an_attempt_and_own_jobs_still_run(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="twenty_jobs.runtime.hand_off")
    ran: list[Any] = []
    own_jobs(registry, ran, "CallWebhookJob")
    node_id = await producer.add(Q, NODE_JOB, {"n": 1})
    own_ids = [await producer.add(Q, "CallWebhookJob", {"i": i}) for i in range(3)]
    await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE)
    await wait_until(lambda: len(ran) == 3)
    assert node_id is not None and all(own_ids)

    score = await redis.zscore(f"{prefix}:{Q}:delayed", node_id)
    assert score is not None
    assert await redis.zcard(f"{prefix}:{Q}:failed") == 0
    atm, ats, delay, reason = await job_fields(redis, prefix, node_id, "atm", "ats", "delay", "failedReason")
    assert (atm, ats, delay, reason) == (None, "1", "30000", None)  # fetched once, no attempt used
    assert "no consumer other than twenty-jobs is connected" in caplog.text
    # Fetched once, then left alone: still one start after a while.
    await asyncio.sleep(1.0)
    assert (await job_fields(redis, prefix, node_id, "ats")) == ["1"]


async def test_with_another_consumer_connected_the_job_sits_out_briefly(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str,
    node_connection: aioredis.Redis,
) -> None:
    own_jobs(registry, [], "CallWebhookJob")
    node_id = await producer.add(Q, NODE_JOB, {"n": 1})
    await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE)
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:delayed", node_id))
    assert await job_fields(redis, prefix, node_id, "atm", "delay") == [None, "250"]


async def test_jobs_waiting_for_a_consumer_are_made_due_when_one_connects(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str,
    redis_url: str,
) -> None:
    own_jobs(registry, [], "CallWebhookJob")
    node_id = await producer.add(Q, NODE_JOB, {"n": 1})
    await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE)
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:delayed", node_id))
    assert await job_fields(redis, prefix, node_id, "delay") == ["30000"]

    async def promoted() -> bool:
        events = await redis.xrange(f"{prefix}:{Q}:events")
        return any(e.get("jobId") == node_id and e.get("event") == "waiting" and e.get("prev") == "delayed"
                   for _, e in events)

    assert not await promoted()
    node = aioredis.Redis.from_url(redis_url, client_name=worker_client_name(prefix, Q))
    try:
        await node.ping()
        await wait_until(promoted, timeout=5)
    finally:
        await node.aclose()


async def test_hand_off_job_goes_back_unattempted_with_leave_and_fails_without(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str,
    node_connection: aioredis.Redis,
) -> None:
    @twenty_jobs.job(queue=Q, name="CallWebhookJobsJob", registry=registry)
    async def gated(data: Any, ctx: Any) -> None:
        raise HandOffJob("record sharing is on in this workspace: Twenty's Node worker must deliver it")

    events: list[JobEvent] = []
    listener = EventListener()
    listener.on("left", events.append)
    left_id = await producer.add(Q, "CallWebhookJobsJob", {"batch": 1}, retry_limit=3)
    worker = await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE, observers=[listener])
    await wait_until(lambda: events)
    await worker.stop()
    assert events[0].job_id == left_id and "record sharing" in str(events[0].error)
    assert await redis.zscore(f"{prefix}:{Q}:delayed", left_id) is not None
    assert await job_fields(redis, prefix, left_id, "atm", "failedReason") == [None, None]

    failed_id = await producer.add(Q, "CallWebhookJobsJob", {"batch": 2}, retry_limit=3)
    await start_worker([Q])  # --unknown-jobs fail (the default)
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:failed", failed_id))
    atm, reason = await job_fields(redis, prefix, failed_id, "atm", "failedReason")
    assert atm == "1" and reason is not None and "record sharing" in reason  # for good: no retry


async def test_burst_does_not_wait_for_jobs_left_to_another_consumer(
    registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str, node_connection: aioredis.Redis,
) -> None:
    ran: list[Any] = []
    own_jobs(registry, ran, "CallWebhookJob")
    node_ids = [await producer.add(Q, NODE_JOB, {"n": n}) for n in range(3)]
    await producer.add(Q, "CallWebhookJob", {"i": 1})
    worker = TwentyWorker(worker_config(prefix, [Q], burst=True, unknown_jobs=UnknownJobs.LEAVE), registry)
    assert await asyncio.wait_for(worker.run(), 20) == 0
    assert ran == [{"i": 1}]
    pending = await redis.zcard(f"{prefix}:{Q}:delayed") + await redis.zcard(f"{prefix}:{Q}:prioritized")
    assert pending == len(node_ids)  # still there, for Node
    assert await redis.zcard(f"{prefix}:{Q}:failed") == 0


async def test_start_up_warns_when_node_shares_a_queue_with_python_only_names(
    registry: Registry, prefix: str, node_connection: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    own_jobs(registry, [], "CallWebhookJob", "MyOwnJob")
    caplog.set_level(logging.WARNING, logger="twenty_jobs.runtime.hand_off")
    rw = RunningWorker(TwentyWorker(worker_config(prefix, [Q]), registry))
    await rw.ready()
    await rw.stop()
    (line,) = [r.getMessage() for r in caplog.records if "may be lost" in r.getMessage()]
    assert "jobs named MyOwnJob (handled only here)" in line and "CallWebhookJob" not in line


async def test_no_start_up_warning_for_ported_names_or_without_another_consumer(
    registry: Registry, prefix: str, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    own_jobs(registry, [], "CallWebhookJob", "MyOwnJob")
    caplog.set_level(logging.WARNING, logger="twenty_jobs.runtime.hand_off")
    rw = RunningWorker(TwentyWorker(worker_config(prefix, [Q]), registry))
    await rw.ready()
    await rw.stop()
    assert "may be lost" not in caplog.text  # MyOwnJob, but nobody else serves Q

    other = Registry()
    own_jobs(other, [], "CallWebhookJob")
    node = aioredis.Redis.from_url(redis_url, client_name=worker_client_name(prefix, Q))
    try:
        await node.ping()
        rw = RunningWorker(TwentyWorker(worker_config(prefix, [Q]), other))
        await rw.ready()
        await rw.stop()
    finally:
        await node.aclose()
    assert "may be lost" not in caplog.text  # shared, but only Twenty's own names here


async def test_a_python_worker_is_not_another_consumer(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str, redis_url: str,
) -> None:
    own_jobs(registry, [], "CallWebhookJob")
    python_peer = aioredis.Redis.from_url(redis_url, client_name=twenty_jobs_client_name(prefix, Q))
    try:
        await python_peer.ping()
        node_id = await producer.add(Q, NODE_JOB, {"n": 1})
        await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE)
        await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:delayed", node_id))
        assert await job_fields(redis, prefix, node_id, "delay") == ["30000"]
    finally:
        await python_peer.aclose()


async def test_where_client_list_is_refused_left_jobs_sit_out_briefly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = PrivateRedis(tmp_path)
    admin_url = server.start()
    admin = aioredis.Redis.from_url(admin_url, decode_responses=True)
    try:
        await admin.execute_command("ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all", "-client|list")
        url = admin_url.replace("redis://", "redis://worker:pw@")
        registry = Registry()
        own_jobs(registry, [], "CallWebhookJob")
        caplog.set_level(logging.WARNING, logger="twenty_jobs.runtime.hand_off")
        async with Producer(url, prefix="acl", registry=registry, allow_any_queue=True) as producer:
            node_id = await producer.add(Q, NODE_JOB, {"n": 1})
            config = worker_config("acl", [Q], unknown_jobs=UnknownJobs.LEAVE)
            config.redis_url = url
            rw = RunningWorker(TwentyWorker(config, registry))
            await rw.ready()
            await wait_until(lambda: admin.zscore(f"acl:{Q}:delayed", node_id))
            await rw.stop()
        assert await admin.hget(f"acl:{Q}:{node_id}", "delay") == "250"
        assert "Redis refuses CLIENT LIST" in caplog.text
    finally:
        await admin.aclose()
        server.stop()


def test_cli_unknown_jobs_from_the_environment(prefix: str, tmp_path: Path) -> None:
    handlers = tmp_path / "my_handlers.py"
    handlers.write_text(
        "import twenty_jobs\n\n"
        f"@twenty_jobs.job(queue='{Q}', name='CallWebhookJob')\n"
        "async def call(data, ctx):\n    return None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWENTY_JOBS_UNKNOWN_JOBS": "leave"}
    add = [sys.executable, "-m", "twenty_jobs.cli", "enqueue", Q, NODE_JOB, "--data", "{}", "--prefix", prefix,
           "--redis-url", REDIS_URL]
    assert subprocess.run(add, env=env, cwd=tmp_path, capture_output=True, check=False).returncode == 0
    work = [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", Q, "--import", "my_handlers",
            "--no-builtin-jobs", "--burst", "--prefix", prefix, "--redis-url", REDIS_URL, "--no-uvloop"]
    done = subprocess.run(work, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "other jobs are left to the queue's other consumers" in done.stderr
    assert "failed" not in done.stderr.split("serving", 1)[1].lower()

    bad = {**env, "TWENTY_JOBS_UNKNOWN_JOBS": "skip"}
    refused = subprocess.run(work, env=bad, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "'skip' is not one of 'fail', 'leave'" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_heartbeat_says_the_worker_leaves_unknown_jobs_and_left_jobs_are_not_counted_failed(
    registry: Registry, producer: Producer, start_worker: Any, redis: aioredis.Redis, prefix: str,
    node_connection: aioredis.Redis,
) -> None:
    @twenty_jobs.job(queue=Q, name="CallWebhookJobsJob", registry=registry)
    async def gated(data: Any, ctx: Any) -> None:
        raise HandOffJob("the record gate is on")

    heartbeat = Heartbeat(interval_s=0.1, ttl_s=5)
    await producer.add(Q, "CallWebhookJobsJob", {"batch": 1})
    await start_worker([Q], unknown_jobs=UnknownJobs.LEAVE, observers=[heartbeat], services=[heartbeat])
    await wait_until(lambda: heartbeat.tallies.get(Q) and heartbeat.tallies[Q].last_job_at)
    (record,) = await read_heartbeats(redis, prefix)
    assert record.unknown_jobs == "leave"
    tally = heartbeat.tallies[Q]
    assert (tally.completed, tally.failed, tally.retried) == (0, 0, 0)
