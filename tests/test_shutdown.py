"""Signals, the bounded drain and Redis outages, with `twenty-jobs work` as a real subprocess and
a private redis-server for the outage (the shared one is never stopped)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import twenty_jobs
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig

from .conftest import REDIS_URL, wait_until, worker_config

REPO = Path(__file__).resolve().parent.parent
TWENTY_JOBS = [sys.executable, "-m", "twenty_jobs.cli"]
Q = "workspace-queue"


def start_cli_worker(prefix: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    env.pop("REDIS_QUEUE_URL", None)
    return subprocess.Popen(
        [*TWENTY_JOBS, "work", "--queue", Q, "--import", "tests.cli_handlers", "--no-builtin-jobs",
         "--prefix", prefix, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("worker did not exit in time")
        await asyncio.sleep(0.05)
    return proc.returncode


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


async def test_sigterm_lets_the_active_job_finish_then_exits_0(
    producer: Producer, redis: aioredis.Redis, prefix: str, procs: list[Any]
) -> None:
    marker = f"{prefix}:marker"
    proc = start_cli_worker(prefix, "--grace", "20")
    procs.append(proc)
    job_id = await producer.add(Q, "Sleepy", {"marker": marker, "seconds": 1.5})
    await wait_until(lambda: redis.llen(f"{marker}:started"), timeout=15)
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert await redis.lrange(f"{marker}:finished", 0, -1) == [job_id]
    assert await redis.zscore(f"{prefix}:{Q}:completed", str(job_id)) is not None


async def test_second_signal_stops_at_once_and_the_cut_job_is_recovered_not_lost(
    producer: Producer, redis: aioredis.Redis, prefix: str, procs: list[Any]
) -> None:
    marker = f"{prefix}:marker"
    fast_stall = ("--lock-duration-ms", "1500", "--stalled-interval-ms", "300")
    proc = start_cli_worker(prefix, "--grace", "60", *fast_stall)
    procs.append(proc)
    job_id = await producer.add(Q, "Sleepy", {"marker": marker, "seconds": 60})
    await wait_until(lambda: redis.llen(f"{marker}:started"), timeout=15)
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 10) != 0
    # Never deleted: the job is still active with its hash, waiting for stall recovery.
    assert await redis.exists(f"{prefix}:{Q}:{job_id}") == 1
    assert job_id in await redis.lrange(f"{prefix}:{Q}:active", 0, -1)
    rescuer = start_cli_worker(prefix, *fast_stall)
    procs.append(rescuer)
    await wait_until(lambda: redis.zscore(f"{prefix}:{Q}:completed", str(job_id)), timeout=20)
    assert await redis.lrange(f"{marker}:finished", 0, -1) == [job_id]
    rescuer.send_signal(signal.SIGTERM)
    assert await wait_exit(rescuer, 15) == 0


async def test_grace_deadline_stops_with_nonzero_exit_and_leaves_the_job_active(
    producer: Producer, redis: aioredis.Redis, prefix: str, procs: list[Any]
) -> None:
    marker = f"{prefix}:marker"
    proc = start_cli_worker(prefix, "--grace", "1")
    procs.append(proc)
    job_id = await producer.add(Q, "Sleepy", {"marker": marker, "seconds": 60})
    await wait_until(lambda: redis.llen(f"{marker}:started"), timeout=15)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) != 0
    assert time.monotonic() - t0 < 8
    assert job_id in await redis.lrange(f"{prefix}:{Q}:active", 0, -1)


async def test_cancelling_the_worker_task_stops_its_queue_workers_too(
    prefix: str, registry: Registry, producer: Producer, redis: aioredis.Redis
) -> None:
    # An app that runs the worker as a task of its own and cancels it (or an interrupted
    # asyncio.run): run() closed the connections but left the queue workers' tasks fetching on
    # them, and the caller waiting on the cancelled task could hang.
    started = asyncio.Event()
    stopped_hooks: list[str] = []

    @twenty_jobs.job(queue=Q, name="Slow", registry=registry)
    async def slow(data: Any, ctx: twenty_jobs.JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    async def on_shutdown(ctx: Any) -> None:
        stopped_hooks.append("shutdown")

    before = asyncio.all_tasks()
    config = worker_config(prefix, [Q], on_shutdown=[on_shutdown])
    worker = TwentyWorker(config, registry)
    task = asyncio.ensure_future(worker.run())
    job_id = await producer.add(Q, "Slow", {})
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
    assert left == []
    assert job_id in await redis.lrange(f"{prefix}:{Q}:active", 0, -1)  # for the stall checker
    assert stopped_hooks == ["shutdown"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_private_redis(port: int, workdir: Path, *, persistent: bool = False) -> subprocess.Popen[bytes]:
    """A redis-server of the test's own; `persistent` keeps the data across restarts (AOF, fsync
    on every write), as a production queue Redis would."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (make test installs it)"
    durability = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *durability, "--dir", str(workdir),
         "--logfile", str(workdir / f"redis-{port}.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("private redis-server did not start")


async def test_worker_survives_a_redis_restart_and_resumes_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.redis")
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_private_redis(port, tmp_path)
    registry = Registry()
    done: list[int] = []

    @twenty_jobs.job(queue=Q, name="N", registry=registry)
    async def n(data: dict[str, int], ctx: Any) -> None:
        done.append(data["i"])

    worker = TwentyWorker(WorkerConfig(queues=[Q], redis_url=url, prefix="outage",
                                       install_signal_handlers=False, grace_s=5), registry)
    task = asyncio.ensure_future(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), 10)
        async with Producer(url, prefix="outage", registry=registry) as producer:
            await producer.add(Q, "N", {"i": 1})
            await wait_until(lambda: done == [1], timeout=10)
            server.terminate()
            server.wait(10)
            await asyncio.sleep(1.0)
            server = start_private_redis(port, tmp_path)
            await producer.add(Q, "N", {"i": 2})
            await wait_until(lambda: done == [1, 2], timeout=15)
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "Redis connection lost" in messages
        assert "restored" in messages
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 20)
        server.kill()
        server.wait()
