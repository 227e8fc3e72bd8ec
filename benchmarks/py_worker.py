"""The `py` and `py-info` rows of `make bench`: the worker `twenty-jobs work` runs, started in
process through `run_worker(WorkerConfig(...))` with only a no-op handler on a fresh Registry
(no built-in jobs, no metrics or heartbeat extras), until SIGTERM.

    python -m benchmarks.py_worker --redis-url URL --prefix P --queue Q --concurrency C \
        [--log-level WARNING|INFO] [--loop uvloop|asyncio] [--latency]

Logging goes to stderr exactly as the CLI sets it up (the benchmark sends it to a file). On exit
it prints one JSON line: {"event": "done", "handled": n, ...} with, under --latency, the start
latency of every job (handler start - data.ts, in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import time
from typing import Any

import twenty_jobs
from benchmarks.job_names import NOOP_JOB
from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.runtime.worker import WorkerConfig, run_worker


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    registry = twenty_jobs.Registry()
    handled = 0
    latencies: list[float] = []

    @twenty_jobs.job(queue=args.queue, name=NOOP_JOB, registry=registry)
    async def noop(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
        nonlocal handled
        handled += 1
        if args.latency:
            latencies.append(time.time() * 1000 - data["ts"])

    config = WorkerConfig(queues=[args.queue], redis_url=args.redis_url, prefix=args.prefix,
                          concurrency=args.concurrency)
    code = await run_worker(config, registry)
    record: dict[str, Any] = {
        "event": "done", "impl": "py", "exit_code": code, "handled": handled,
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "log_level": logging.getLevelName(logging.getLogger().level),
    }
    if args.latency:
        record["latencies_ms"] = latencies
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.py_worker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args(argv)
    # Exactly what `twenty-jobs work` does: its log setup, then uvloop when asked for.
    setup_logging(args.log_level, "text")
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    record = asyncio.run(serve(args))
    sys.stdout.write(json.dumps(record) + "\n")
    return int(record["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
