"""arq for the `peers` scenario: a no-op job, its worker settings, and a producer. Runs in the
peers venv (.venv-peers, `make bench PEERS=1`), never in the project's: arq pins redis-py < 6.

    arq benchmarks.peers_arq.WorkerSettings                      # the worker, arq's own CLI
    python -m benchmarks.peers_arq --redis-url URL --jobs N      # the producer

Environment: TJ_BENCH_REDIS_URL, TJ_BENCH_QUEUE (the queue's key), TJ_BENCH_CONCURRENCY
(max_jobs; default 10, arq's own default). Everything else is arq's default (keep_result 3600 s,
INFO logging of every job by its CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings

QUEUE = os.environ.get("TJ_BENCH_QUEUE", "arq:queue")
REDIS_URL = os.environ.get("TJ_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
    return None


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    queue_name = QUEUE
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = int(os.environ.get("TJ_BENCH_CONCURRENCY", "10"))


async def produce(jobs: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=QUEUE)
    workspace = str(uuid.uuid4())
    started = time.perf_counter()
    for start in range(0, jobs, 100):
        # Job ids carry the queue name, so the benchmark can find and delete every key of the run.
        await asyncio.gather(*(
            pool.enqueue_job("noop", {"i": i, "workspaceId": workspace, "ts": time.time() * 1000},
                             _job_id=f"{QUEUE}-{i}")
            for i in range(start, min(jobs, start + 100))
        ))
    await pool.aclose()
    print(json.dumps({"added": jobs, "elapsed_s": time.perf_counter() - started}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers_arq")
    parser.add_argument("--jobs", type=int, required=True)
    asyncio.run(produce(parser.parse_args().jobs))
