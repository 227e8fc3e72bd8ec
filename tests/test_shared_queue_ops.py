"""`check` and `doctor` on a queue shared with Twenty's Node worker (ops/shared_queues.py): which job
names wait for which consumer, and the names Node would complete unrun. The Python workers are
their heartbeats (written as `twenty-jobs work` writes them); "Node" is a connection named as
Node's workers name theirs. Real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from twenty_jobs.cli.app import app
from twenty_jobs.observability.heartbeat import HeartbeatRecord
from twenty_jobs.ops.check import evaluate_health
from twenty_jobs.ops.doctor import run_doctor
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.wire.keys import heartbeat_key, twenty_jobs_client_name, worker_client_name

from .conftest import REDIS_URL

Q = "webhook-queue"
NODE_JOB = "CreateWebhookSubscriptionJob"
runner = CliRunner()


async def python_worker(redis: aioredis.Redis, prefix: str, handlers: list[str], unknown_jobs: str) -> str:
    """A live twenty-jobs worker of Q: its heartbeat and its blocking connection's name."""
    now = int(time.time() * 1000)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{unknown_jobs}"
    record = HeartbeatRecord(worker_id=worker_id, queue=Q, host=socket.gethostname(), pid=os.getpid(),
                             version="test", started_at=now, at=now, interval_ms=5000, queues=[Q],
                             handlers=handlers, unknown_jobs=unknown_jobs)
    await redis.set(heartbeat_key(prefix, Q, worker_id), record.to_json(), px=30_000)
    return worker_id


@pytest.fixture
async def python_connection(redis_url: str, prefix: str) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(redis_url, client_name=twenty_jobs_client_name(prefix, Q))
    await client.ping()
    yield
    await client.aclose()


async def node_connected(redis_url: str, prefix: str) -> aioredis.Redis:
    client = aioredis.Redis.from_url(redis_url, client_name=worker_client_name(prefix, Q))
    await client.ping()
    return client


async def add_jobs(producer: Producer) -> None:
    for n in range(3):
        await producer.add(Q, NODE_JOB, {"n": n})
    await producer.add(Q, "RenewWebhookSubscriptionJob", {"n": 1}, delay=60_000)
    await producer.add(Q, "CallWebhookJob", [])


SHARED_CODES = ("waiting_for_consumer", "python_only_names_shared")


def cli(prefix: str, *args: str) -> tuple[int, Any]:
    result = runner.invoke(app, [*args, "--json", "--redis-url", REDIS_URL, "--prefix", prefix])
    return result.exit_code, json.loads(result.output)


async def test_check_fails_naming_the_jobs_left_for_a_consumer_nobody_runs(
    redis: aioredis.Redis, producer: Producer, prefix: str, redis_url: str, python_connection: None
) -> None:
    await python_worker(redis, prefix, ["CallWebhookJob", "CallWebhookJobsJob"], "leave")
    await add_jobs(producer)

    report = await evaluate_health(redis, prefix)
    (stuck,) = [p for p in report.problems if p.code == "waiting_for_consumer"]
    assert stuck.queue == Q
    assert "4 job(s) that twenty-jobs leaves to another consumer wait" in stuck.message
    assert f"{NODE_JOB} (3), RenewWebhookSubscriptionJob (1)" in stuck.message
    assert "CallWebhookJob" not in stuck.message.split(": ", 2)[-1].split(";")[0]
    code, out = await asyncio.to_thread(cli, prefix, "check")
    assert code == 1 and any(p["code"] == "waiting_for_consumer" for p in out["problems"])

    node = await node_connected(redis_url, prefix)
    try:
        report = await evaluate_health(redis, prefix)
        assert not [p for p in report.problems if p.code == "waiting_for_consumer"]
        doctor = await run_doctor(redis, prefix, [Q], at=int(time.time() * 1000))
    finally:
        await node.aclose()
    (waiting,) = [f for f in doctor.findings if f.code in SHARED_CODES]
    assert waiting.severity == "info"
    assert "4 job(s) wait for the 1 consumer(s) other than twenty-jobs" in waiting.message
    # A leaving worker does not fail the names it lacks: no "will fail them" error.
    assert not [f for f in doctor.findings if f.code == "unhandled_jobs" and f.severity == "error"]


async def test_a_failing_worker_still_gets_the_no_handler_error_and_no_waiting_finding(
    redis: aioredis.Redis, producer: Producer, prefix: str, python_connection: None
) -> None:
    await python_worker(redis, prefix, ["CallWebhookJob"], "fail")
    await add_jobs(producer)
    doctor = await run_doctor(redis, prefix, [Q], at=int(time.time() * 1000))
    assert [f for f in doctor.findings if f.code == "unhandled_jobs" and f.severity == "error"]
    assert not [f for f in doctor.findings if f.code in SHARED_CODES]


async def test_doctor_and_check_warn_about_python_only_names_on_a_queue_node_also_serves(
    redis: aioredis.Redis, prefix: str, redis_url: str, python_connection: None
) -> None:
    await python_worker(redis, prefix, ["CallWebhookJob", "MyOwnJob"], "leave")
    node = await node_connected(redis_url, prefix)
    try:
        doctor = await run_doctor(redis, prefix, [Q], at=int(time.time() * 1000))
        report = await evaluate_health(redis, prefix)
    finally:
        await node.aclose()
    (hazard,) = [f for f in doctor.findings if f.code in SHARED_CODES]
    assert hazard.severity == "warn" and "MyOwnJob (handled only by twenty-jobs) may be lost" in hazard.message
    assert "CallWebhookJob" not in hazard.message
    assert [w for w in report.warnings if w.code == "python_only_names_shared"]
    assert report.healthy
