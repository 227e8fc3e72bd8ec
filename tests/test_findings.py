"""One findings model, each rule written once: `check`, `doctor` and `status` say exactly the same
thing about the same queue (twenty_jobs/ops/rules.py), with fix hints that keep the --prefix."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
from typer.testing import CliRunner

from tests.conftest import REDIS_URL
from twenty_jobs.cli.app import app
from twenty_jobs.observability.heartbeat import now_ms
from twenty_jobs.ops.check import evaluate_health
from twenty_jobs.ops.doctor import run_doctor
from twenty_jobs.ops.findings import Finding, Severity, command
from twenty_jobs.ops.status import collect_status
from twenty_jobs.runtime.producer import Producer

runner = CliRunner()


async def cli_json(prefix: str, *args: str) -> tuple[int, Any]:
    result = await asyncio.to_thread(
        runner.invoke, app, [*args, "--json", "--redis-url", REDIS_URL, "--prefix", prefix]
    )
    return result.exit_code, json.loads(result.output)


async def same_finding_everywhere(redis: aioredis.Redis, prefix: str, code: str) -> Finding:
    """The finding `code` as check, doctor and status make it, asserted identical."""
    check = await evaluate_health(redis, prefix)
    doctor = await run_doctor(redis, prefix, ["email-queue"], at=now_ms())
    status = await collect_status(redis, prefix, None, now_ms())
    found = [[f for f in findings if f.code == code]
             for findings in ([*check.problems, *check.warnings], doctor.findings, status.findings)]
    assert all(len(f) == 1 for f in found), found
    assert found[0][0] == found[1][0] == found[2][0]
    return found[0][0]


async def test_ready_jobs_with_no_consumer_are_the_same_error_in_check_doctor_and_status(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    finding = await same_finding_everywhere(redis, prefix, "no_consumer")
    assert finding.severity is Severity.ERROR and finding.queue == "email-queue"
    assert finding.message == ("email-queue: 1 job(s) ready (1 prioritized) and no worker, Node or Python, is "
                               "connected: they will never run")
    assert f"`twenty-jobs work --queue email-queue --prefix {prefix}`" in (finding.fix or "")

    code, status = await cli_json(prefix, "status")
    assert code == 0 and status["findings"] == [finding.as_dict()]
    table = await asyncio.to_thread(runner.invoke, app, ["status", "--redis-url", REDIS_URL, "--prefix", prefix])
    assert f"ERROR: {finding.one_line()}" in " ".join(table.output.split())


async def test_a_paused_queue_with_jobs_is_the_same_warning_everywhere(
    producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    await redis.hset(f"{prefix}:email-queue:meta", "paused", "1")
    finding = await same_finding_everywhere(redis, prefix, "queue_paused")
    table = await asyncio.to_thread(runner.invoke, app, ["status", "--redis-url", REDIS_URL, "--prefix", prefix])
    assert "email-queue [paused]" in table.output  # the marker is text, not rich markup
    assert finding.severity is Severity.WARN
    assert finding.message == ("email-queue: the queue is paused with 1 job(s) waiting; no worker takes them until "
                               "it is resumed")
    # The resume that works here: ours (no Node below 6 shares the queue) ...
    assert finding.fix == f"`twenty-jobs queue resume email-queue --prefix {prefix}` if the pause was not intended"
    # ... or Node's, when a Node bullmq below 6 does (ours is refused there).
    await redis.hset(f"{prefix}:email-queue:meta", "version", "bullmq:5.40.0")
    finding = await same_finding_everywhere(redis, prefix, "queue_paused")
    assert finding.fix == "resume it from Twenty/Node (Node bullmq 5.40.0 shares it) if the pause was not intended"
    assert (await evaluate_health(redis, prefix)).healthy  # a warning, not a failure


async def test_check_on_a_prefix_with_nothing_under_it_is_unhealthy(prefix: str) -> None:
    code, report = await cli_json(prefix, "check")
    assert code == 1
    (problem,) = report["problems"]
    assert problem["code"] == "nothing_under_prefix"
    assert problem["message"] == f"no BullMQ queue and no twenty-jobs worker under prefix '{prefix}' in this Redis"


async def test_check_watches_queues_of_other_bullmq_apps_too(producer: Producer, prefix: str) -> None:
    await producer.add("embeddings", "Embed", {})  # not a Twenty queue
    code, report = await cli_json(prefix, "check")
    assert code == 1 and [p["queue"] for p in report["problems"]] == ["embeddings"]


def test_fix_hints_name_the_prefix_only_when_it_is_not_the_default() -> None:
    assert command("work", "--queue", "email-queue", prefix="bull") == "twenty-jobs work --queue email-queue"
    assert command("repair", prefix="my app") == "twenty-jobs repair --prefix 'my app'"
