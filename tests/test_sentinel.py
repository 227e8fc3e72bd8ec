"""Redis Sentinel (issue 13, item 4) with a real master, replica and three sentinels on loopback
(Debian's redis-server in sentinel mode): every command, the producer and the worker through
REDIS_SENTINELS, and a SENTINEL FAILOVER in the middle of a run of 2,000 jobs that loses none."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bullmq import Queue

from twenty_jobs.connection.client import make_client, make_command_connection
from twenty_jobs.settings import load_settings

from .redis_servers import RedisProcess, SentinelGroup, fail_over, start_sentinel_group, wait_for
from .test_connect_cli import REPO, SECRET, clean_env, every_command_works

SENTINEL_SECRET = "Sx7-sentinel-pw"
JOBS = 2_000


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    started: list[RedisProcess] = []
    try:
        yield start_sentinel_group(tmp_path_factory.mktemp("sentinel"), started, password=SECRET,
                                   sentinel_password=SENTINEL_SECRET)
    finally:
        for process in reversed(started):
            process.stop()


def sentinel_env(group: SentinelGroup) -> dict[str, str]:
    return clean_env(REDIS_SENTINELS=group.sentinels, REDIS_SENTINEL_NAME="mymaster",
                     REDIS_SENTINEL_PASSWORD=SENTINEL_SECRET, REDIS_PASSWORD=SECRET)


def test_every_command_works_through_redis_sentinels(group: SentinelGroup, tmp_path: Path) -> None:
    prefix = f"tj-sent-{uuid.uuid4().hex[:8]}"
    said = every_command_works(sentinel_env(group), tmp_path, prefix)
    assert all(SECRET not in text and SENTINEL_SECRET not in text for text in said)
    assert on_the_master(group, prefix)


def test_every_command_works_through_a_sentinel_url(group: SentinelGroup, tmp_path: Path) -> None:
    prefix = f"tj-sent-{uuid.uuid4().hex[:8]}"
    url = f"redis+sentinel://:{SECRET}@{group.sentinels}/mymaster?sentinel_password={SENTINEL_SECRET}"
    said = every_command_works(clean_env(REDIS_URL=url), tmp_path, prefix)
    assert all(SECRET not in text and SENTINEL_SECRET not in text for text in said)
    assert on_the_master(group, prefix)


def on_the_master(group: SentinelGroup, prefix: str) -> bool:
    """The commands worked on the master the sentinels name (not on some default Redis)."""
    client = group.data_client(group.master_port_now())
    try:
        return bool(client.exists(f"{prefix}:tj-conn:meta"))
    finally:
        client.close()


async def test_the_command_connection_reaches_the_current_master(group: SentinelGroup) -> None:
    target = load_settings(redis_url_option=f"redis+sentinel://:{SECRET}@{group.sentinels}/mymaster?"
                                             f"sentinel_password={SENTINEL_SECRET}").redis_target
    connection = make_command_connection(target, what="test")
    try:
        role = await connection.call("ROLE")
    finally:
        await connection.aclose()
    assert role[0] == "master"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failover_in_the_middle_of_2000_jobs_loses_none_and_the_worker_logs_it(
    group: SentinelGroup, tmp_path: Path
) -> None:
    prefix = f"tj-failover-{uuid.uuid4().hex[:8]}"
    env = sentinel_env(group)
    target_url = (f"redis+sentinel://:{SECRET}@{group.sentinels}/mymaster?sentinel_password={SENTINEL_SECRET}")
    job_ids = asyncio.run(enqueue_pace_jobs(target_url, prefix))
    assert len(job_ids) == JOBS
    old_master = group.master_port_now()
    master = group.data_client(old_master)
    try:
        assert master.execute_command("WAIT", 1, 10_000) == 1  # the replica has every job
    finally:
        master.close()
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", "tj-conn", "--no-builtin-jobs",
             "--import", "tests.connection_handlers", "--prefix", prefix, "--concurrency", "10",
             "--lock-duration-ms", "5000", "--stalled-interval-ms", "1000", "--max-stalled-count", "5"],
            cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: completed(group, prefix) >= JOBS // 4, 120, "a quarter of the jobs")
        new_master = fail_over(group)
        done_at_failover = completed(group, prefix)
        assert done_at_failover < JOBS, "the run ended before the failover; make the jobs slower"
        wait_for(lambda: completed(group, prefix) == JOBS, 180, "every job to complete on the new master")
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(60)
    said = log_path.read_text()
    assert exit_code == 0, said[-3000:]
    assert f"moved from 127.0.0.1:{old_master} to 127.0.0.1:{new_master}" in said, said[-3000:]
    assert SECRET not in said and SENTINEL_SECRET not in said
    client = group.data_client(new_master)
    try:
        assert set(client.zrange(f"{prefix}:tj-conn:completed", 0, -1)) == set(job_ids)
        for state in ("failed", "delayed", "wait", "active", "prioritized"):
            key = f"{prefix}:tj-conn:{state}"
            count = client.zcard(key) if client.type(key) == "zset" else client.llen(key)
            assert count == 0, (state, count)
    finally:
        client.close()


async def enqueue_pace_jobs(url: str, prefix: str) -> list[str]:
    """2,000 jobs that are kept when completed (Twenty's producer keeps only the last 1,000, and
    the test must find every one), added through the Sentinel connection by the BullMQ port."""
    client = make_client(url, what="test producer")
    try:
        queue = Queue("tj-conn", {"connection": client, "prefix": prefix})
        ids: list[str] = []
        for start in range(0, JOBS, 500):
            jobs = [{"name": "Pace", "data": {"i": i, "ms": 25},
                     "opts": {"jobId": f"pace-{i}", "removeOnComplete": False}} for i in range(start, start + 500)]
            ids += [job.id for job in await queue.addBulk(jobs)]
        return ids
    finally:
        await client.aclose()


def completed(group: SentinelGroup, prefix: str) -> int:
    client = group.data_client(group.master_port_now())
    try:
        return int(client.zcard(f"{prefix}:tj-conn:completed"))
    finally:
        client.close()


async def test_clients_follow_a_failover(group: SentinelGroup) -> None:
    """A redis-py client built by make_client reconnects to the new master after a failover."""
    url = f"redis+sentinel://:{SECRET}@{group.sentinels}/mymaster?sentinel_password={SENTINEL_SECRET}"
    client = make_client(url, what="test", retry_forever=True)
    key = f"tj-follow-{uuid.uuid4().hex[:8]}"
    try:
        await client.set(key, "before")
        before = group.master_port_now()
        await asyncio.to_thread(fail_over, group)
        # The old master's connection was closed by Sentinel; the retry asks the sentinels again.
        await asyncio.wait_for(client.set(key, "after"), 30)
        assert group.master_port_now() != before
        new_master = group.data_client(group.master_port_now())
        try:
            assert new_master.get(key) == "after"
        finally:
            new_master.close()
    finally:
        await client.aclose()
