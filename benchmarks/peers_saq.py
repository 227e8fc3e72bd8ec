"""saq for the `peers` scenario: a no-op job, its worker settings, and a producer. Runs in the
peers venv (.venv-peers, `make bench PEERS=1`).

    saq benchmarks.peers_saq.settings                            # the worker, saq's own CLI
    python -m benchmarks.peers_saq --jobs N                      # the producer

Environment: TJ_BENCH_REDIS_URL, TJ_BENCH_QUEUE (the queue's name), TJ_BENCH_CONCURRENCY
(default 10, saq's own default). Everything else is saq's default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

from saq import Queue

QUEUE = os.environ.get("TJ_BENCH_QUEUE", "default")
REDIS_URL = os.environ.get("TJ_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


async def noop(ctx: dict[str, Any], **data: Any) -> None:
    return None


settings = {
    "queue": Queue.from_url(REDIS_URL, name=QUEUE),
    "functions": [noop],
    "concurrency": int(os.environ.get("TJ_BENCH_CONCURRENCY", "10")),
}


async def produce(jobs: int) -> None:
    queue = Queue.from_url(REDIS_URL, name=QUEUE)
    await queue.connect()
    workspace = str(uuid.uuid4())
    started = time.perf_counter()
    for start in range(0, jobs, 100):
        await asyncio.gather(*(
            queue.enqueue("noop", i=i, workspaceId=workspace, ts=time.time() * 1000)
            for i in range(start, min(jobs, start + 100))
        ))
    await queue.disconnect()
    print(json.dumps({"added": jobs, "elapsed_s": time.perf_counter() - started}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers_saq")
    parser.add_argument("--jobs", type=int, required=True)
    asyncio.run(produce(parser.parse_args().jobs))
