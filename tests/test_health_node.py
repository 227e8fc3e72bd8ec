"""Health across languages, with real Node bullmq 5.40.0 (node_fixture): Twenty's health page
(Node `getWorkers()` / `getMetrics()`) sees a Python worker set up as `twenty-jobs work` sets it
up, and `status` / `check` count Twenty's Node workers as consumers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from interop_tests.node import NodeWorker, arun_fixture, fixture_installed
from tests.conftest import REDIS_URL, RunningWorker, wait_until
from twenty_jobs.cli.app import app
from twenty_jobs.observability.health import Heartbeat
from twenty_jobs.observability.worker_services import build_worker_services
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job

pytestmark = pytest.mark.skipif(not fixture_installed(), reason="node_fixture is not installed")

QUEUE = "email-queue"
StartWorker = Callable[..., Awaitable[RunningWorker]]
runner = CliRunner()


async def cli_json(prefix: str, *args: str) -> tuple[int, Any]:
    result = await asyncio.to_thread(
        runner.invoke, app, [*args, "--json", "--redis-url", REDIS_URL, "--prefix", prefix]
    )
    return result.exit_code, json.loads(result.output)


async def test_twentys_health_page_and_our_check_see_node_and_python_workers_alike(
    start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str
) -> None:
    @job(QUEUE, "EmailSenderJob", registry=registry)
    async def send(data: Any, ctx: JobContext) -> None:
        pass

    # Only Twenty's Node worker: our check counts it as the queue's live consumer.
    async with NodeWorker(QUEUE, prefix=prefix, redis_url=REDIS_URL):
        code, report = await cli_json(prefix, "check", "--queue", QUEUE)
        assert code == 0, report
        assert report["queues"][0]["workers"] == 1 and report["queues"][0]["python_workers"] == 0

        # Then a Python worker set up exactly as `twenty-jobs work` will set it up.
        built = build_worker_services(metrics_port=None)
        observers, services = built.observers, built.services
        heartbeat = services[0]
        assert isinstance(heartbeat, Heartbeat)
        heartbeat.interval_s = 0.2
        await start_worker([QUEUE], observers=observers, services=services)

        node_view = await arun_fixture("workers", prefix=prefix, queue=QUEUE)
        assert node_view["count"] == 2  # Twenty's admin health page counts both

        code, status = await cli_json(prefix, "status", "--queue", QUEUE)
        (row,) = status["queues"]
        assert (row["workers"], row["node_workers"], row["python_workers"]) == (2, 1, 1)

    # Python alone finishes jobs; Node's getMetrics (the admin page's charts) counts them.
    for i in range(4):
        await producer.add(QUEUE, "EmailSenderJob", {"i": i})
    await wait_until(lambda: heartbeat.tallies[QUEUE].completed == 4)
    metrics = await arun_fixture("metrics", prefix=prefix, queue=QUEUE, type="completed")
    assert int(metrics["meta"]["count"]) == 4
    code, report = await cli_json(prefix, "check", "--queue", QUEUE, "--stuck-after", "1")
    assert code == 0 and report["queues"][0]["python_workers"] == 1
