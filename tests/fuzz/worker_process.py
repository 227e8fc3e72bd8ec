"""A `--burst` worker for one fuzz batch, in a process of its own (so a worker that never exits can
be stopped by pid without leaving tasks behind in the test's event loop).

    python -m tests.fuzz.worker_process --redis-url U --prefix P --queue Q --handled FILE

The handler of the good job name returns normally and appends `{"job_id", "token"}` to FILE, one
JSON line per call, so the test can count how often each job ran. Logs go to stderr at INFO (what
`twenty-jobs work` logs by default). The exit code is the worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import IO, Any

import twenty_jobs
from tests.fuzz.cases import GOOD_NAME
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import WorkerConfig, run_worker


def registry_for(queue: str, handled: IO[str]) -> Registry:
    registry = Registry()

    @twenty_jobs.job(queue=queue, name=GOOD_NAME, registry=registry)
    async def fuzz_good(data: Any, ctx: twenty_jobs.JobContext) -> dict[str, bool]:
        token = data.get("fuzz") if isinstance(data, dict) else None
        handled.write(json.dumps({"job_id": ctx.job_id, "token": token}) + "\n")
        handled.flush()
        return {"ok": True}

    return registry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--handled", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    with open(args.handled, "a", encoding="utf-8") as handled:
        config = WorkerConfig(
            queues=[args.queue], redis_url=args.redis_url, prefix=args.prefix, burst=True,
            concurrency=args.concurrency, grace_s=2,
        )
        sys.exit(asyncio.run(run_worker(config, registry_for(args.queue, handled))))


if __name__ == "__main__":
    main()
