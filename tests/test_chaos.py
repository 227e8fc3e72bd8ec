"""Chaos: workers SIGKILLed again and again while jobs flow (and, in the full run, the Redis server
restarted under them). Nothing may be lost: every job ends completed, none failed.

`make test` runs the fast subset; `make chaos` (TWENTY_JOBS_CHAOS_FULL=1) runs the long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from twenty_jobs.runtime.producer import Producer

from .conftest import delete_prefix
from .test_shutdown import free_port, start_private_redis

REPO = Path(__file__).resolve().parent.parent
FULL = os.environ.get("TWENTY_JOBS_CHAOS_FULL") == "1"
Q = "workspace-queue"

pytestmark = pytest.mark.chaos


def spawn_worker(url: str, prefix: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": url}
    env.pop("REDIS_QUEUE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", Q, "--import", "tests.cli_handlers",
         "--no-builtin-jobs", "--prefix", prefix, "--concurrency", "8", "--lock-duration-ms", "1500",
         "--stalled-interval-ms", "300", "--max-stalled-count", "10", "--log-level", "ERROR"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(900)
async def test_no_job_is_lost_when_workers_are_killed_and_redis_restarts(tmp_path: Path) -> None:
    jobs, kills, redis_restarts = (5000, 40, 3) if FULL else (400, 6, 1)
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_private_redis(port, tmp_path, persistent=True)
    prefix = "chaos"
    marker = f"{prefix}:marker"
    rng = random.Random(7)
    workers = [spawn_worker(url, prefix), spawn_worker(url, prefix)]
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        async with Producer(url, prefix=prefix) as producer:
            # A job cut short twice (two kills, or a kill and a Redis restart, within one run) would
            # exceed Twenty's maxStalledCount of 1 and fail by BullMQ's design ("stalled more than
            # allowable limit"), visibly, not lost. The workers allow 10 stalls so the invariant
            # here is the strict one: every job completes.
            ids = []
            for start in range(0, jobs, 500):
                ids += await producer.add_bulk(
                    Q, "Chaos", [{"marker": marker, "seconds": rng.uniform(0.001, 0.02)}
                                 for _ in range(start, min(jobs, start + 500))], retry_limit=5)
        restart_at = {int(kills * (i + 1) / (redis_restarts + 1)) for i in range(redis_restarts)}
        for n in range(kills):
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            if n in restart_at:
                server.terminate()
                server.wait(10)
                await asyncio.sleep(0.5)
                server = start_private_redis(port, tmp_path, persistent=True)
            workers[victim] = spawn_worker(url, prefix)
        deadline = time.monotonic() + (600 if FULL else 120)
        expected = set(ids)
        while time.monotonic() < deadline:
            try:
                ran = set(await redis.lrange(f"{marker}:runs", 0, -1))
                left = sum([await redis.llen(f"{prefix}:{Q}:active"), await redis.zcard(f"{prefix}:{Q}:prioritized")])
            except Exception:  # the restarted Redis may still be loading its AOF
                ran, left = set(), 1
            if (ran >= expected and left == 0) or await redis.zcard(f"{prefix}:{Q}:failed"):
                break
            await asyncio.sleep(0.5)
        failed = await redis.zrange(f"{prefix}:{Q}:failed", 0, -1)
        runs = await redis.lrange(f"{marker}:runs", 0, -1)
        assert failed == [], f"failed jobs: {failed[:5]}"
        # Retention keeps at most 1000 completed entries (Twenty's removeOnComplete), so count
        # outcomes by the runs the handler recorded, and check nothing is left to run.
        assert set(runs) == set(ids), f"{len(set(ids) - set(runs))} job(s) never ran"
        for state in ("wait", "active", "paused"):
            assert await redis.llen(f"{prefix}:{Q}:{state}") == 0, state
        assert await redis.zcard(f"{prefix}:{Q}:prioritized") == 0
        assert await redis.zcard(f"{prefix}:{Q}:delayed") == 0
        repeated = len(runs) - len(set(runs))
        print(f"\nchaos: {jobs} jobs, {kills} worker kills, {redis_restarts} Redis restarts, "
              f"{repeated} job(s) run twice (at-least-once after a kill mid-job), 0 lost")
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
        await redis.aclose()
        await delete_prefix(prefix, url)
        server.kill()
        server.wait()


def spawn_burst_worker(url: str, prefix: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": url}
    env.pop("REDIS_QUEUE_URL", None)
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", Q, "--import", "tests.cli_handlers",
         "--no-builtin-jobs", "--prefix", prefix, "--concurrency", "8", "--lock-duration-ms", "1500",
         "--stalled-interval-ms", "300", "--max-stalled-count", "10", "--burst", "--log-level", "WARNING"],
        cwd=REPO, env=env, stdout=log, stderr=log,
    )


async def _runs_and_leftovers(redis: aioredis.Redis, prefix: str, marker: str) -> tuple[list[str], list[str], int]:
    for _ in range(300):  # a just-restarted Redis answers LOADING until its AOF is read back
        try:
            await redis.ping()
            break
        except (BusyLoadingError, RedisConnectionError):
            await asyncio.sleep(0.1)
    runs = await redis.lrange(f"{marker}:runs", 0, -1)
    failed = await redis.zrange(f"{prefix}:{Q}:failed", 0, -1)
    left = sum([await redis.llen(f"{prefix}:{Q}:{s}") for s in ("wait", "active", "paused")]
               + [await redis.zcard(f"{prefix}:{Q}:{s}") for s in ("prioritized", "delayed")])
    return runs, failed, left


async def _assert_burst_drained(
    redis: aioredis.Redis, prefix: str, marker: str, ids: list[str], workers: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> tuple[list[str], str]:
    """Both burst workers exited 0, nothing failed or is left, every job ran; the runs and the
    workers' log tails."""
    codes = [await asyncio.to_thread(w.wait, 180) for w in workers]
    runs, failed, left = await _runs_and_leftovers(redis, prefix, marker)
    tails = "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
    assert codes == [0] * len(workers), tails
    assert failed == [] and left == 0, tails
    assert set(runs) == set(ids), f"{len(set(ids) - set(runs))} job(s) never ran"
    return runs, tails


async def _tear_down(workers: list[subprocess.Popen[bytes]], redis: aioredis.Redis, prefix: str, url: str,
                     server: subprocess.Popen[bytes]) -> None:
    for w in workers:
        if w.poll() is None:
            w.kill()
            w.wait()
    await redis.aclose()
    await delete_prefix(prefix, url)
    server.kill()
    server.wait()


@pytest.mark.timeout(600)
async def test_burst_workers_finish_and_exit_through_redis_restarts(tmp_path: Path) -> None:
    """`--burst` under Redis restarts: every job runs, none fails, and each worker exits 0 by
    itself once the queue is empty (before the fix, a burst worker idled forever after a restart)."""
    jobs, restarts = (3000, 4) if FULL else (600, 2)
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_private_redis(port, tmp_path, persistent=True)
    prefix, marker = "chaos-burst", "chaos-burst:marker"
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with Producer(url, prefix=prefix) as producer:
            ids = await producer.add_bulk(Q, "Chaos", [{"marker": marker, "seconds": 0.005} for _ in range(jobs)],
                                          retry_limit=5)
        workers = [spawn_burst_worker(url, prefix, tmp_path / f"w{i}.log") for i in range(2)]
        for _ in range(restarts):
            await asyncio.sleep(1.0)
            server.terminate()
            server.wait(10)
            await asyncio.sleep(0.5)
            server = start_private_redis(port, tmp_path, persistent=True)
        runs, _ = await _assert_burst_drained(redis, prefix, marker, ids, workers,
                                              [tmp_path / f"w{i}.log" for i in range(2)])
        print(f"\nchaos (burst): {jobs} jobs, {restarts} Redis restarts, both burst workers exited 0, "
              f"{len(runs) - len(set(runs))} run twice, 0 lost")
    finally:
        await _tear_down(workers, redis, prefix, url, server)


@pytest.mark.timeout(600)
async def test_connection_kills_during_finish_and_fetch_lose_nothing(tmp_path: Path) -> None:
    """The worker's command connections are killed (CLIENT KILL) again and again while jobs are
    finished and the next ones fetched in the same call: a finishing call whose reply was lost is
    never sent twice (no "Missing lock" failures), and no job is lost or failed."""
    jobs, kills = (4000, 80) if FULL else (1200, 15)
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_private_redis(port, tmp_path, persistent=False)
    prefix, marker = "chaos-kill", "chaos-kill:marker"
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    rng = random.Random(11)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with Producer(url, prefix=prefix) as producer:
            ids = await producer.add_bulk(Q, "Chaos", [{"marker": marker, "seconds": 0.02} for _ in range(jobs)],
                                          retry_limit=5)
        workers = [spawn_burst_worker(url, prefix, tmp_path / f"k{i}.log") for i in range(2)]
        killed = 0
        deadline = time.monotonic() + 120
        while killed < kills and time.monotonic() < deadline and any(w.poll() is None for w in workers):
            await asyncio.sleep(rng.uniform(0.02, 0.08))
            clients = await redis.client_list()
            # The workers' command connections (not the blocking ones, named after the queue).
            victims = [c for c in clients if c.get("cmd") in ("evalsha", "eval") and c.get("name", "") == ""]
            for c in victims[:1]:
                with contextlib.suppress(Exception):
                    await redis.client_kill_filter(_id=c["id"])
                    killed += 1
        runs, logs = await _assert_burst_drained(redis, prefix, marker, ids, workers,
                                                 [tmp_path / f"k{i}.log" for i in range(2)])
        assert "Missing lock" not in logs
        assert killed >= 3, f"only {killed} connections were caught mid-flight"
        print(f"\nchaos (connection kills): {jobs} jobs, {killed} command connections killed mid-flight, "
              f"{len(runs) - len(set(runs))} run twice, 0 lost, 0 failed")
    finally:
        await _tear_down(workers, redis, prefix, url, server)
