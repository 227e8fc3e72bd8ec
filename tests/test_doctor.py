"""`twenty-jobs doctor`: each finding, on real Redis data written by Python and by Node bullmq
5.40.0 (node_fixture), and the advice that comes with it."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from tests.conftest import REDIS_URL
from twenty_jobs.cli.app import app
from twenty_jobs.observability.heartbeat import HeartbeatRecord, now_ms
from twenty_jobs.ops.doctor import DoctorReport, _check_redis, run_doctor
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import default_registry
from twenty_jobs.wire.compat import NODE_BELOW_6_FIX, NodeVersion, node_below_6_hazards, startup_warning
from twenty_jobs.wire.keys import heartbeat_key

runner = CliRunner()


async def doctor(prefix: str, *args: str) -> tuple[int, dict[str, Any]]:
    """`twenty-jobs doctor --json` (in a thread: the command runs its own event loop)."""
    args_ = ["doctor", "--json", *args, "--redis-url", REDIS_URL, "--prefix", prefix]
    result = await asyncio.to_thread(runner.invoke, app, args_)
    return result.exit_code, json.loads(result.output)


def findings(report: dict[str, Any], *codes: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] in codes]


async def python_worker_on(redis: aioredis.Redis, prefix: str, queue: str, handlers: list[str]) -> None:
    """A fresh heartbeat, as a running `twenty-jobs work` process writes it."""
    at = now_ms()
    record = HeartbeatRecord(worker_id="h:1:a", queue=queue, host="h", pid=1, version="0.1.0", started_at=at,
                             at=at, interval_ms=5000, queues=[queue], handlers=handlers)
    await redis.set(heartbeat_key(prefix, queue, record.worker_id), record.to_json(), px=30_000)


def node(prefix: str, cmd: str, **opts: Any) -> dict[str, Any]:
    from interop_tests.node import fixture_installed, run_fixture

    if not fixture_installed():
        pytest.skip("node_fixture is not installed")
    return run_fixture(cmd, prefix=prefix, **opts)


async def test_a_healthy_setup_has_no_errors(producer: Producer, redis: aioredis.Redis, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {}, delay=60_000)
    code, report = await doctor(prefix)
    assert code == 0 and report["errors"] == 0
    assert report["queues"] == ["email-queue"]
    assert report["redis"]["version"]
    if report["redis"]["maxmemory_policy"] == "noeviction":
        assert any(f["severity"] == "ok" and "noeviction" in f["message"]
                   for f in findings(report, "maxmemory_policy"))


class FakeInfo:
    def __init__(self, **info: Any) -> None:
        self._info = info

    async def info(self) -> dict[str, Any]:
        return self._info


@pytest.mark.parametrize(
    ("info", "level", "words"),
    [
        ({"redis_version": "7.2.4", "maxmemory_policy": "allkeys-lru"}, "error", "maxmemory-policy is 'allkeys-lru'"),
        ({"redis_version": "6.0.9", "maxmemory_policy": "noeviction"}, "warn", "older than the 6.2.0"),
        ({"redis_version": "4.0.1", "maxmemory_policy": "noeviction"}, "error", "older than BullMQ's minimum"),
        ({"redis_version": "7.2.4", "maxmemory_policy": "noeviction", "maxmemory": 100, "used_memory": 95},
         "warn", "95%"),
    ],
)
async def test_redis_settings_that_lose_or_stall_jobs_are_flagged(info: dict[str, Any], level: str, words: str) -> None:
    report = DoctorReport()
    await _check_redis(FakeInfo(**info), report)  # type: ignore[arg-type]
    flagged = [f for f in report.findings if f.severity == level and words in f.message]
    assert flagged and flagged[0].fix


async def test_node_bullmq_5_sharing_a_python_queue_is_warned_about(redis: aioredis.Redis, prefix: str) -> None:
    node(prefix, "touch", queue="email-queue")  # what a Twenty server does at boot
    node(prefix, "touch", queue="webhook-queue")
    await python_worker_on(redis, prefix, "email-queue", ["EmailSenderJob"])
    _, report = await doctor(prefix)
    (warn,) = findings(report, "node_below_6")
    assert warn["severity"] == "warn"
    assert "Node bullmq 5.40.0 (below 6) writes webhook-queue, email-queue" in warn["message"]
    assert "shared with Python workers on email-queue" in warn["message"]
    # The very sentences the worker logs at start (wire/compat.py): one rule, said once.
    hazards = node_below_6_hazards(NodeVersion(5, 40, 0))
    assert len(hazards) == 3 and all(h in warn["message"] for h in hazards)
    assert all(f"- {h}" in (startup_warning("email-queue", NodeVersion(5, 40, 0)) or "") for h in hazards)
    assert "refuses to pause or resume" in warn["message"] and "`stalledCounter`" in warn["message"]
    assert "`defa`" in warn["message"]
    assert warn["fix"] == NODE_BELOW_6_FIX


async def test_without_python_workers_the_node_version_is_only_information(prefix: str) -> None:
    node(prefix, "touch", queue="email-queue")
    _, report = await doctor(prefix)
    (finding,) = findings(report, "node_below_6")
    assert finding["severity"] == "info" and "no Python worker serves them now" in finding["message"]


async def test_legacy_repeatable_jobs_are_found_and_the_fix_is_given(redis: aioredis.Redis, prefix: str) -> None:
    node(prefix, "add-raw", queue="cron-queue", name="OldCronJob", opts={"repeat": {"pattern": "0 * * * *"}})
    node(prefix, "add-cron", queue="cron-queue", name="NewCronJob", pattern="0 * * * *")
    _, report = await doctor(prefix)
    (legacy,) = [f for f in findings(report, "legacy_repeatable") if f["severity"] != "ok"]
    assert legacy["severity"] == "warn" and "OldCronJob" in legacy["message"]
    assert f"removeRepeatableByKey('{legacy['message'].split(chr(39))[1]}')" in legacy["fix"]
    assert "cron register" in legacy["fix"]

    await python_worker_on(redis, prefix, "cron-queue", ["OldCronJob", "NewCronJob"])
    code, report = await doctor(prefix)
    (legacy,) = [f for f in findings(report, "legacy_repeatable") if f["severity"] != "ok"]
    assert code == 1 and legacy["severity"] == "error"
    assert "lose their data or stop, and a Python worker serves this queue" in legacy["message"]


async def test_jobs_nobody_consumes_are_an_error(producer: Producer, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    code, report = await doctor(prefix)
    assert code == 1
    (finding,) = findings(report, "no_consumer")
    assert "email-queue: 1 job(s) ready (1 prioritized) and no worker" in finding["message"]
    assert "twenty-jobs work --queue email-queue" in finding["fix"]


async def test_pending_job_names_a_python_worker_cannot_handle_are_an_error(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add("webhook-queue", "CallWebhookJob", {})
    await producer.add("webhook-queue", "SomeNewTwentyJob", {})
    await producer.add("webhook-queue", "SomeNewTwentyJob", {}, delay=60_000)
    await python_worker_on(redis, prefix, "webhook-queue", ["CallWebhookJob", "CallWebhookJobsJob"])
    code, report = await doctor(prefix)
    (finding,) = [f for f in findings(report, "unhandled_jobs") if f["severity"] == "error"]
    assert code == 1
    assert "webhook-queue: 2 pending job(s) named 'SomeNewTwentyJob'" in finding["message"]
    assert "@twenty_jobs.job(queue='webhook-queue', name='SomeNewTwentyJob')" in finding["fix"]


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tj_doctor_handlers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import twenty_jobs

        @twenty_jobs.job(queue="workflow-queue", name="RunWorkflowJob")
        async def run(data, ctx):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    default_registry.remove("workflow-queue", "RunWorkflowJob")
    sys.modules.pop(name, None)


async def test_import_checks_the_handlers_a_worker_would_load(
    handler_module: str, producer: Producer, prefix: str
) -> None:
    await producer.add("workflow-queue", "RunWorkflowJob", {}, delay=60_000)
    await producer.add("workflow-queue", "WorkflowStepJob", {}, delay=60_000)
    _, before = await doctor(prefix)
    assert [f["severity"] for f in findings(before, "unhandled_jobs")] == ["info"]
    code, report = await doctor(prefix, "--import", handler_module)
    (finding,) = findings(report, "unhandled_jobs")
    assert code == 1 and "'WorkflowStepJob'" in finding["message"] and "RunWorkflowJob" not in finding["message"]


async def test_memory_held_by_finished_jobs_is_estimated(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    ids = [await producer.add("email-queue", "EmailSenderJob", {"body": "x" * 2000}) for _ in range(20)]
    # Finish them the cheap way for this test: mark them completed as BullMQ would.
    await redis.zadd(f"{prefix}:email-queue:completed", {str(i): now_ms() for i in ids})
    await redis.delete(f"{prefix}:email-queue:prioritized")
    report = await run_doctor(redis, prefix, ["email-queue"], at=now_ms())
    (memory,) = [f for f in report.findings if f.code == "finished_memory"]
    assert memory.severity == "info"
    assert memory.message.startswith("finished jobs hold about ") and "email-queue" in memory.message
    assert "KB" in memory.message  # 20 jobs of ~2 KB each


async def test_doctor_names_queues_and_job_names_it_does_not_know(redis: aioredis.Redis, prefix: str) -> None:
    """Issue 10: a queue that is not Twenty's, a Twenty queue whose worker config was not read from
    Twenty, and pending job names that are neither Twenty's known jobs nor handled in Python."""
    async with Producer(REDIS_URL, prefix=prefix, allow_any_queue=True) as any_queue:
        await any_queue.add("embeddings", "Embed", {"i": 1})
        await any_queue.add("campaign-queue", "SendCampaignJob", {"i": 1})
        await any_queue.add("webhook-queue", "MysteryJob", {"i": 1})
        await any_queue.add("webhook-queue", "RenewWebhookSubscriptionJob", {"i": 1})
    _, report = await doctor(prefix)
    [unknown_queue] = [f for f in findings(report, "unknown_queue") if f["queue"] == "embeddings"]
    assert "not one of Twenty's queues" in unknown_queue["message"]
    [unverified] = [f for f in findings(report, "unverified_queue_config") if f["queue"] == "campaign-queue"]
    assert "could not be read" in unverified["message"]
    [names] = [f for f in findings(report, "unknown_job_names") if f["queue"] == "webhook-queue"]
    assert "MysteryJob (1)" in names["message"] and "RenewWebhookSubscriptionJob" not in names["message"]
