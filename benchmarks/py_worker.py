"""The Python side of `make bench`: one TwentyWorker (the code `twenty-jobs work` runs) with a
no-op handler, in its own process, until it has completed --jobs jobs.

    python -m benchmarks.py_worker --redis-url URL --prefix P --queue Q --jobs N --concurrency C \
        [--mode drain|latency] [--log-level WARNING|INFO] [--loop uvloop|asyncio]

Prints JSON lines on stdout, the same protocol as node_fixture/bin/bench-worker.js:
{"event": "ready"} once the queue workers exist, then {"event": "done", ...} with the
measurements taken from the first handler call to the N-th `completed` event.
Logging goes to stderr exactly as the CLI sets it up (the benchmark sends it to a file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import resource
import sys
import time
from typing import Any

import twenty_jobs
from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig

JOB_NAME = "BenchNoopJob"


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def cpu_ms() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (ru.ru_utime + ru.ru_stime) * 1000


class Probe:
    """Marks the first handler call and counts completions; stops the worker at the N-th."""

    def __init__(self, jobs: int, mode: str) -> None:
        self.jobs = jobs
        self.mode = mode
        self.done = 0
        self.first_at: float | None = None
        self.first_cpu = 0.0
        self.latencies: list[float] | None = [] if mode == "latency" else None
        self.worker: TwentyWorker | None = None
        self.result: dict[str, Any] | None = None

    def first_call(self) -> None:
        self.first_at = time.perf_counter()
        self.first_cpu = cpu_ms()

    # WorkerService: told once the queue workers exist (before they fetch anything).
    async def start(self, worker: TwentyWorker) -> None:
        self.worker = worker
        emit({"event": "ready"})

    async def stop(self) -> None:
        return None

    # JobObserver: counts completions.
    def job_started(self, queue: str, job: Any) -> None:
        return None

    def job_stalled(self, queue: str, job_id: str) -> None:
        return None

    def job_finished(self, queue: str, job: Any, outcome: str, duration_ms: float, error: BaseException | None) -> None:
        if outcome != "completed":
            return
        self.done += 1
        if self.done == self.jobs:
            assert self.first_at is not None and self.worker is not None
            self.result = {
                "elapsed_s": time.perf_counter() - self.first_at,
                "cpu_ms": cpu_ms() - self.first_cpu,
            }
            # Report now, as Node does, so the shutdown is not part of the measured window.
            emit(self.record())
            self.worker.request_stop()

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event": "done",
            "impl": "py",
            "python": platform.python_version(),
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "log_level": logging.getLevelName(logging.getLogger().level),
            "mode": self.mode,
            "processed": self.done,
            **(self.result or {}),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        if self.latencies is not None:
            record["latencies_ms"] = self.latencies
        return record


async def main_async(args: argparse.Namespace) -> int:
    registry = Registry()
    probe = Probe(args.jobs, args.mode)

    @twenty_jobs.job(queue=args.queue, name=JOB_NAME, registry=registry)
    async def noop(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
        if probe.first_at is None:
            probe.first_call()
        if probe.latencies is not None:
            probe.latencies.append(time.time() * 1000 - data["ts"])

    config = WorkerConfig(
        queues=[args.queue],
        redis_url=args.redis_url,
        prefix=args.prefix,
        concurrency=args.concurrency,
        grace_s=30,
        install_signal_handlers=True,
        services=[probe],
        observers=[probe],
    )
    code = await TwentyWorker(config, registry).run()
    if probe.result is None:
        print(f"py_worker: stopped after {probe.done} of {args.jobs} jobs", file=sys.stderr)
        return code or 1
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.py_worker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--mode", choices=["drain", "latency"], default="drain")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    # Exactly what `twenty-jobs work` does: its log setup, then uvloop when asked for.
    setup_logging(args.log_level, "text")
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
