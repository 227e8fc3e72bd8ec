"""Scaling out: several `twenty-jobs work` processes (hosts, pods) on one Redis share a queue.

Nothing assigns jobs to workers: each worker's slots block on the queue's BullMQ marker and
whoever wakes first takes the next job. So the share should be even enough, and nothing may be
lost or run twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from twenty_jobs.observability.health import read_heartbeats
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.wire.keys import queue_key

from .conftest import REDIS_URL, wait_until

REPO = Path(__file__).resolve().parent.parent
WORKERS = 3
JOBS = 3_000
QUEUE = "workspace-queue"


async def test_three_workers_share_one_queue_evenly_and_lose_nothing(
    prefix: str, producer: Producer, redis: aioredis.Redis
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    env.pop("REDIS_QUEUE_URL", None)
    argv = [sys.executable, "-m", "twenty_jobs.cli", "work", "--import", "tests.scale_handlers", "--no-builtin-jobs",
            "--queue", QUEUE, "--prefix", prefix, "--concurrency", "5", "--log-level", "WARNING"]
    workers = [
        subprocess.Popen(  # noqa: ASYNC220 (background processes for the whole test)
            argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(WORKERS)
    ]
    marker = f"{prefix}:scale"
    try:
        # All three are serving (heartbeat written, blocking fetch under way) before any job exists.
        async def all_serving() -> bool:
            return len({hb.pid for hb in await read_heartbeats(redis, prefix)}) == WORKERS

        await wait_until(all_serving, timeout=60)
        await asyncio.sleep(0.5)
        ids: list[str] = []
        for start in range(0, JOBS, 500):
            ids += await producer.add_bulk(QUEUE, "Tally", [{"marker": marker}] * min(500, JOBS - start))

        async def all_ran() -> bool:
            return int(await redis.scard(f"{marker}:ran")) >= JOBS

        await wait_until(all_ran, timeout=180, interval=0.2)
        await asyncio.sleep(0.5)  # a job run twice would show up in the counts below
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(w.wait, 60) for w in workers]
    errors = "\n".join(w.stderr.read() for w in workers if w.stderr)
    assert codes == [0] * WORKERS, errors

    runs = {int(pid): int(n) for pid, n in (await redis.hgetall(f"{marker}:runs-by-pid")).items()}
    assert set(runs) == {w.pid for w in workers}, runs
    assert set(await redis.smembers(f"{marker}:ran")) == set(ids)  # every job ran ...
    assert sum(runs.values()) == JOBS  # ... exactly once
    assert await redis.zcard(queue_key(prefix, QUEUE, "failed")) == 0
    fair = JOBS / WORKERS
    print(f"jobs per worker: {sorted(runs.values())} (fair share {fair:.0f})")
    assert min(runs.values()) >= fair / 2, runs
