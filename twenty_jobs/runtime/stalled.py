"""The stalled-job check: at start, then every `stalled_interval_ms`, active jobs whose lock has
expired (their worker died or blocked its event loop) go back to wait, and those over
`max_stalled_count` are marked to fail on their next fetch (BullMQ's moveStalledJobsToWait; one
run per interval across all the queue's workers). Node checks at start too; the Python port
waits a whole interval first.
"""

from __future__ import annotations

import asyncio
import logging

from twenty_jobs.connection.protocol import CommandConnection
from twenty_jobs.runtime.events import Observers
from twenty_jobs.wire.scripts.worker import WorkerScripts

log = logging.getLogger("twenty_jobs.runtime.stalled")


class StalledChecker:
    def __init__(self, queue: str, scripts: WorkerScripts, conn: CommandConnection, observers: Observers, *,
                 max_stalled_count: int, interval_ms: int) -> None:
        self.queue = queue
        self.scripts = scripts
        self.conn = conn
        self.observers = observers
        self.max_stalled_count = max_stalled_count
        self.interval_ms = interval_ms
        self._failing = False

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval_ms / 1000)

    async def check(self) -> list[str]:
        """One check; returns the ids moved back to wait. Errors are logged, never raised."""
        try:
            for job_id in await self.scripts.repair_stall_counters(self.conn):
                log.warning("queue %s: job #%s had a stall counter (`stc`) that is not a whole number; reset to 0 so "
                            "the stalled check can move it", self.queue, job_id)
            moved = await self.scripts.move_stalled_jobs_to_wait(
                self.conn, max_stalled_count=self.max_stalled_count, stalled_interval_ms=self.interval_ms
            )
        except Exception as exc:
            if not self._failing:
                log.warning("queue %s: stalled-job check failed: %s (retried every %d ms)", self.queue, exc,
                            self.interval_ms)
            self._failing = True
            return []
        self._failing = False
        for job_id in moved:
            self.observers.stalled(self.queue, job_id)
        return moved
