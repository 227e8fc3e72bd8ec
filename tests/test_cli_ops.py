"""The operations commands end to end: `status`, `check`, `failed list|retry|clean`,
`cron list|add|remove|register`, run through the real CLI against the real local Redis.

Async tests run the CLI in a thread (each command calls asyncio.run) while workers run on the
test's own event loop."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from tests.conftest import REDIS_URL, RunningWorker, wait_until
from twenty_jobs.cli.app import app
from twenty_jobs.connection import client as connection
from twenty_jobs.errors import PermanentJobError
from twenty_jobs.observability.health import Heartbeat
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import BulkItem, Producer
from twenty_jobs.runtime.registry import Registry, default_registry, job

StartWorker = Callable[..., Awaitable[RunningWorker]]
runner = CliRunner()


def cli(prefix: str, *args: str) -> Result:
    return runner.invoke(app, [*args, "--redis-url", REDIS_URL, "--prefix", prefix])


async def acli(prefix: str, *args: str) -> Result:
    return await asyncio.to_thread(cli, prefix, *args)


def lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


async def fail_jobs(start_worker: StartWorker, registry: Registry, producer: Producer, queue: str, n: int) -> None:
    """Put `n` jobs in `queue`'s failed set through a real worker."""

    @job(queue, "Doomed", registry=registry)
    async def doomed(data: Any, ctx: JobContext) -> None:
        raise PermanentJobError(f"boom {data['i']}")

    for start in range(0, n, 500):
        await producer.add_bulk(queue, "Doomed", [BulkItem({"i": i, "workspaceId": "ws-1"})
                                                  for i in range(start, min(n, start + 500))])
    rw = await start_worker([queue], concurrency=50)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        prefix = rw.worker.config.prefix
        await wait_until(lambda: _zcard(client, f"{prefix}:{queue}:failed", n), timeout=30)
    finally:
        await client.aclose()
    await rw.stop()
    registry.remove(queue, "Doomed")


async def _zcard(client: aioredis.Redis, key: str, n: int) -> bool:
    return int(await client.zcard(key)) >= n


# -- argument and connection errors: one line, the right exit code, for every command -------------

COMMANDS_WITH_QUEUE: list[list[str]] = [
    ["status", "--queue", "emial-queue"],
    ["check", "--queue", "emial-queue"],
    ["doctor", "--queue", "emial-queue"],
    ["failed", "list", "emial-queue"],
    ["failed", "retry", "emial-queue", "--all"],
    ["failed", "clean", "emial-queue"],
    ["cron", "list", "--queue", "emial-queue"],
    ["cron", "add", "emial-queue", "SomeJob", "--every", "1000"],
    ["cron", "remove", "emial-queue", "SomeJob"],
]


@pytest.mark.parametrize("args", COMMANDS_WITH_QUEUE, ids=lambda a: " ".join(a[:2]))
def test_an_unknown_queue_name_is_one_line_and_exit_2(args: list[str], prefix: str) -> None:
    result = cli(prefix, *args)
    assert result.exit_code == 2, result.output
    assert lines(result) == [lines(result)[0]]
    assert "unknown queue 'emial-queue'. Did you mean 'email-queue'?" in result.output


@pytest.fixture
def no_redis_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(connection, "CLIENT_RETRIES", 0)
    yield


@pytest.mark.parametrize(
    "args",
    [a for a in COMMANDS_WITH_QUEUE if a[0] != "check"] + [["cron", "register", "--no-builtin-jobs"]],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_unreachable_redis_is_one_line_and_exit_1(args: list[str], no_redis_retries: None) -> None:
    args = [a.replace("emial-queue", "email-queue") for a in args]
    result = runner.invoke(app, [*args, "--redis-url", "redis://127.0.0.1:1"])
    assert result.exit_code == 1, result.output
    assert len(lines(result)) == 1
    assert "cannot reach Redis at redis://127.0.0.1:1" in result.output


def test_check_reports_an_unreachable_redis_as_a_verdict(no_redis_retries: None) -> None:
    result = runner.invoke(app, ["check", "--redis-url", "redis://:secret@127.0.0.1:1", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["healthy"] is False
    assert report["problems"][0]["code"] == "redis_unreachable"
    assert "secret" not in result.output


# -- status ------------------------------------------------------------------------------------


async def test_status_shows_counts_per_state_and_live_workers(
    start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str
) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    await producer.add("email-queue", "EmailSenderJob", {})
    await producer.add("email-queue", "EmailSenderJob", {}, delay=60_000)

    @job("webhook-queue", "CallWebhookJob", registry=registry)
    async def call(data: Any, ctx: JobContext) -> None:
        pass

    hb = Heartbeat(interval_s=0.2, ttl_s=3)
    await start_worker(["webhook-queue"], observers=[hb], services=[hb])
    await producer.add("webhook-queue", "CallWebhookJob", {})
    await wait_until(lambda: hb.tallies["webhook-queue"].completed == 1)

    result = await acli(prefix, "status", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["queues"]}
    assert list(rows) == ["webhook-queue", "email-queue"]  # Twenty's order
    email, webhook = rows["email-queue"], rows["webhook-queue"]
    assert (email["prioritized"], email["delayed"], email["workers"]) == (2, 1, 0)
    assert (webhook["completed"], webhook["workers"]) == (1, 1)
    assert (webhook["python_workers"], webhook["node_workers"]) == (1, 0)

    table = await acli(prefix, "status")
    assert table.exit_code == 0
    assert "email-queue" in table.output and "prioritized" in table.output
    assert "1 (0/1)" in table.output  # webhook-queue: 1 worker, 0 Node, 1 Python


async def test_status_watch_refreshes(producer: Producer, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    result = await acli(prefix, "status", "--watch", "--json", "--iterations", "2", "--interval", "0.2")
    assert result.exit_code == 0, result.output
    frames = [json.loads(line) for line in lines(result)]
    assert len(frames) == 2 and frames[1]["queues"][0]["prioritized"] == 1
    live = await acli(prefix, "status", "--watch", "--iterations", "1", "-q", "email-queue")
    assert live.exit_code == 0 and "email-queue" in live.output


def test_status_and_check_agree_that_an_empty_prefix_is_a_failure(prefix: str) -> None:
    status = cli(prefix, "status")
    check = cli(prefix, "check")
    assert (status.exit_code, check.exit_code) == (1, 1)
    sentence = f"no queue and no worker under prefix '{prefix}' in this Redis"
    assert sentence in status.output and sentence in check.output
    assert check.output.startswith("unhealthy: ")


# -- check -------------------------------------------------------------------------------------


async def test_check_exits_0_with_a_working_worker_and_1_with_the_reason_without(
    start_worker: StartWorker, registry: Registry, producer: Producer, prefix: str
) -> None:
    unhealthy = await acli(prefix, "check", "--queue", "email-queue")
    assert unhealthy.exit_code == 1
    assert lines(unhealthy) == ["unhealthy: email-queue: no live worker (no fresh heartbeat and no worker "
                                "connection in CLIENT LIST)"]

    @job("email-queue", "EmailSenderJob", registry=registry)
    async def send(data: Any, ctx: JobContext) -> None:
        pass

    hb = Heartbeat(interval_s=0.2, ttl_s=3)
    await start_worker(["email-queue"], observers=[hb], services=[hb])
    await producer.add("email-queue", "EmailSenderJob", {})
    await wait_until(lambda: hb.tallies["email-queue"].completed == 1)
    healthy = await acli(prefix, "check", "--queue", "email-queue")
    assert healthy.exit_code == 0, healthy.output
    assert lines(healthy)[0].startswith("healthy: 1 queue(s) with workers")
    as_json = await acli(prefix, "check", "--json", "--this-host")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["queues"][0]["python_workers"] == 1


async def test_check_lists_every_problem_one_per_line(producer: Producer, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    await producer.add("webhook-queue", "CallWebhookJob", {})
    result = await acli(prefix, "check")
    assert result.exit_code == 1
    assert [line.split(":")[1].strip() for line in lines(result)] == ["webhook-queue", "email-queue"]
    assert all(line.startswith("unhealthy: ") and "no worker, Node or Python" in line for line in lines(result))


# -- failed ------------------------------------------------------------------------------------


async def test_failed_list_retry_one_and_retry_all_in_batches(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    queue = "workflow-queue"
    # Twenty keeps at most 1000 failed jobs per queue (removeOnFail count), so stay below that.
    await fail_jobs(start_worker, registry, producer, queue, 900)

    listed = await acli(prefix, "failed", "list", queue, "--limit", "3", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["total"] == 900 and len(data["jobs"]) == 3
    first = data["jobs"][0]
    assert first["name"] == "Doomed" and first["failed_reason"].startswith("boom ")
    assert first["workspace_id"] == "ws-1" and first["attempts_made"] == 1 and first["stacktrace"]
    table = await acli(prefix, "failed", "list", queue)
    assert "20 of 900 failed job(s)" in table.output and "boom" in table.output

    one = await acli(prefix, "failed", "retry", queue, "--id", first["id"])
    assert one.exit_code == 0 and f"retried job {first['id']}" in one.output
    assert await redis.zscore(f"{prefix}:{queue}:prioritized", first["id"]) is not None  # keeps its priority
    again = await acli(prefix, "failed", "retry", queue, "--id", first["id"])
    assert again.exit_code == 2 and "is not in the failed set" in again.output

    await redis.hset(f"{prefix}:{queue}:meta", "paused", "1")
    refused = await acli(prefix, "failed", "retry", queue, "--all")
    assert refused.exit_code == 2 and "is paused" in refused.output
    await redis.hdel(f"{prefix}:{queue}:meta", "paused")

    everything = await acli(prefix, "failed", "retry", queue, "--all", "--batch", "400")
    assert everything.exit_code == 0, everything.output
    assert "retried 899 job(s)" in everything.output
    # Progress on a non-interactive stderr: plain counts after every batch.
    assert "retrying failed jobs on workflow-queue: 400/899" in everything.output
    assert "retrying failed jobs on workflow-queue: 899/899" in everything.output
    assert await redis.zcard(f"{prefix}:{queue}:failed") == 0
    assert await redis.llen(f"{prefix}:{queue}:wait") == 899


async def test_failed_clean_honours_older_than_and_deletes_the_jobs(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis, prefix: str
) -> None:
    queue = "workflow-queue"
    await fail_jobs(start_worker, registry, producer, queue, 30)
    failed_key = f"{prefix}:{queue}:failed"
    old = [str(j) for j in await redis.zrange(failed_key, 0, 9)]
    two_days_ago = (await redis.time())[0] * 1000 - 2 * 86_400_000
    await redis.zadd(failed_key, {j: two_days_ago for j in old}, xx=True)

    bad = await acli(prefix, "failed", "clean", queue, "--older-than", "yesterday")
    assert bad.exit_code == 2 and "is not a duration" in bad.output
    older = await acli(prefix, "failed", "clean", queue, "--older-than", "1d", "--json")
    assert older.exit_code == 0, older.output
    assert json.loads(lines(older)[-1]) == {"queue": queue, "removed": 10}
    assert not any([await redis.exists(f"{prefix}:{queue}:{j}") for j in old])

    rest = await acli(prefix, "failed", "clean", queue, "--batch", "7")
    assert rest.exit_code == 0
    assert "removed 20 failed job(s)" in rest.output
    assert "cleaning failed jobs on workflow-queue: 7/20" in rest.output
    assert await redis.zcard(failed_key) == 0


def test_failed_retry_needs_exactly_one_of_id_or_all(prefix: str) -> None:
    for args in ([], ["--id", "1", "--all"]):
        result = cli(prefix, "failed", "retry", "email-queue", *args)
        assert result.exit_code == 2 and "exactly one of --id ID or --all" in result.output


# -- cron --------------------------------------------------------------------------------------


def test_cron_add_list_and_remove(prefix: str) -> None:
    added = cli(prefix, "cron", "add", "cron-queue", "CleanSomethingJob", "--pattern", "*/10 * * * *")
    assert added.exit_code == 0, added.output
    assert "job scheduler 'CleanSomethingJob' on cron-queue" in added.output
    every = cli(prefix, "cron", "add", "cron-queue", "PollJob", "--every", "60000", "--job-id", "w1",
                "--data", '{"workspaceId": "w1"}')
    assert every.exit_code == 0, every.output

    listed = cli(prefix, "cron", "list", "--json")
    crons = {c["id"]: c for c in json.loads(listed.output)["crons"]}
    assert set(crons) == {"CleanSomethingJob", "PollJob.w1"}
    assert crons["CleanSomethingJob"]["schedule"] == "*/10 * * * *"
    assert crons["PollJob.w1"]["every_ms"] == 60000 and crons["PollJob.w1"]["data"] == {"workspaceId": "w1"}
    assert all(c["kind"] == "scheduler" for c in crons.values())
    assert "CleanSomethingJob" in cli(prefix, "cron", "list").output

    removed = cli(prefix, "cron", "remove", "cron-queue", "PollJob", "--job-id", "w1")
    assert removed.exit_code == 0 and "removed job scheduler 'PollJob.w1'" in removed.output
    missing = cli(prefix, "cron", "remove", "cron-queue", "PollJob", "--job-id", "w1")
    assert missing.exit_code == 0 and "nothing to remove" in missing.output
    assert [c["id"] for c in json.loads(cli(prefix, "cron", "list", "--json").output)["crons"]] == [
        "CleanSomethingJob"
    ]
    bad = cli(prefix, "cron", "add", "cron-queue", "X", "--pattern", "not a cron")
    assert bad.exit_code == 2 and "invalid cron" in bad.output


@pytest.fixture
def cron_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tj_cron_handlers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import twenty_jobs

        @twenty_jobs.job(queue="cron-queue", name="TjNightlyJob", cron="0 3 * * *")
        async def nightly(data, ctx):
            pass

        @twenty_jobs.job(queue="cron-queue", name="TjPollJob", every_ms=30000, cron_job_id="a")
        async def poll(data, ctx):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    default_registry.remove("cron-queue", "TjNightlyJob")
    default_registry.remove("cron-queue", "TjPollJob")
    sys.modules.pop(name, None)


def test_cron_register_installs_the_crons_handlers_declare(cron_module: str, prefix: str) -> None:
    result = cli(prefix, "cron", "register", "--import", cron_module, "--no-builtin-jobs", "--json")
    assert result.exit_code == 0, result.output
    registered = {r["scheduler_id"]: r for r in json.loads(result.output)["registered"]}
    assert set(registered) >= {"TjNightlyJob", "TjPollJob.a"}
    assert all(r["error"] is None for r in registered.values())
    crons = {c["id"]: c for c in json.loads(cli(prefix, "cron", "list", "--json").output)["crons"]}
    assert crons["TjNightlyJob"]["pattern"] == "0 3 * * *"
    assert crons["TjPollJob.a"]["every_ms"] == 30000


def test_cron_register_honours_disable_cron_jobs_registration(
    cron_module: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISABLE_CRON_JOBS_REGISTRATION", "true")
    result = cli(prefix, "cron", "register", "--import", cron_module, "--no-builtin-jobs")
    assert result.exit_code == 0
    assert "cron registration skipped: DISABLE_CRON_JOBS_REGISTRATION is set" in result.output
    assert json.loads(cli(prefix, "cron", "list", "--json").output)["crons"] == []


def test_cron_list_marks_a_legacy_repeatable_from_node_bullmq_5(prefix: str) -> None:
    from interop_tests.node import fixture_installed, run_fixture

    if not fixture_installed():
        pytest.skip("node_fixture is not installed")
    run_fixture("add-raw", prefix=prefix, queue="cron-queue", name="OldCronJob",
                opts={"repeat": {"pattern": "0 * * * *"}})
    run_fixture("add-cron", prefix=prefix, queue="cron-queue", name="NewCronJob", pattern="0 * * * *")
    crons = {c["name"]: c for c in json.loads(cli(prefix, "cron", "list", "--json").output)["crons"]}
    assert crons["OldCronJob"]["kind"] == "legacy"
    assert crons["NewCronJob"]["kind"] == "scheduler"
    assert "legacy repeatable" in cli(prefix, "cron", "list").output


def test_a_redis_error_after_connecting_is_one_line_and_exit_1(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import NoPermissionError

    from twenty_jobs.cli import status as status_command

    async def refused(*args: Any) -> Any:
        raise NoPermissionError("this user has no permissions to run the 'scan' command")

    monkeypatch.setattr(status_command, "collect_status", refused)
    result = cli(prefix, "status")
    assert result.exit_code == 1
    assert lines(result) == ["twenty-jobs: error: Redis error: this user has no permissions to run the 'scan' command"]
