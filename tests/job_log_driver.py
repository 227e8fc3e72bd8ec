"""A worker process that dies of an uncaught exception right after its N-th job: the job-log tests
check that every job line is still written, before the traceback.

    python -m tests.job_log_driver REDIS_URL PREFIX N
"""

from __future__ import annotations

import asyncio
import sys

import tests.job_log_handlers as handlers
from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.runtime.events import EventListener, JobEvent
from twenty_jobs.runtime.registry import default_registry
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig


class DriverCrash(Exception):
    """Raised out of asyncio.run once N jobs have completed."""


async def main(redis_url: str, prefix: str, jobs: int) -> None:
    done = asyncio.Event()
    completed = 0

    def count(event: JobEvent) -> None:
        nonlocal completed
        completed += 1
        if completed == jobs:
            done.set()

    events = EventListener()
    events.on("completed", count)
    config = WorkerConfig(queues=[handlers.QUEUE], redis_url=redis_url, prefix=prefix, observers=[events],
                          install_signal_handlers=False)
    worker = asyncio.ensure_future(TwentyWorker(config, default_registry).run())
    await asyncio.wait([worker, asyncio.ensure_future(done.wait())], return_when=asyncio.FIRST_COMPLETED)
    raise DriverCrash(f"stopping on purpose after {completed} jobs")


if __name__ == "__main__":
    setup_logging("INFO")
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
