"""Job locks and abort signals.

A fetched job is locked for `lock_duration_ms` under the fetch's token; while its handler runs,
the lock is extended in one batched extendLocks call for all of the queue's active jobs whose
lock is older than a quarter of the duration, checked every quarter of the duration (Node
renews at half of `lockRenewTime`, itself half the lock duration: the same cadence). A job whose
lock could not be extended belongs to nobody any more: the stall checker will hand it out again,
so its abort signal fires and the outcome of this run will not be recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from twenty_jobs.connection.protocol import CommandConnection
from twenty_jobs.wire.scripts.worker import WorkerScripts

log = logging.getLogger("twenty_jobs.runtime.locks")


class AbortSignal:
    """Tells a running handler to stop: `aborted`, `reason`, `await wait()` (like JavaScript's
    AbortSignal that Node bullmq hands its processors)."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self._event: asyncio.Event | None = None  # made on the first wait(): most jobs never wait

    @property
    def aborted(self) -> bool:
        return self.reason is not None

    def abort(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            if self._event is not None:
                self._event.set()

    async def wait(self) -> None:
        """Return once the signal is aborted."""
        if self.reason is not None:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


@dataclass(slots=True)
class ActiveJob:
    """A job a slot is running: its lock token, abort signal, and last lock write (monotonic s)."""

    token: str
    signal: AbortSignal
    locked_at: float


class LockRenewer:
    """Extends the locks of one queue worker's active jobs until stopped."""

    def __init__(self, queue: str, scripts: WorkerScripts, conn: CommandConnection,
                 active: dict[str, ActiveJob]) -> None:
        self.queue = queue
        self.scripts = scripts
        self.conn = conn
        self.active = active
        self.interval_s = max(scripts.lock_duration_ms / 4000, 0.01)
        self._failing = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.renew_due()

    async def renew_due(self) -> None:
        """One tick: extend every lock older than the interval."""
        now = time.monotonic()
        due = [(job_id, job) for job_id, job in self.active.items() if now - job.locked_at >= self.interval_s]
        if not due:
            return
        try:
            lost = await self.scripts.extend_locks(self.conn, [j for j, _ in due], [job.token for _, job in due])
        except Exception as exc:  # Redis down: the next tick tries again (the lock may still hold)
            if not self._failing:
                log.warning("queue %s: cannot extend the locks of %d job(s): %s", self.queue, len(due), exc)
            self._failing = True
            return
        if self._failing:
            log.warning("queue %s: job locks extended again", self.queue)
            self._failing = False
        for _, job in due:
            job.locked_at = now
        for job_id in lost:
            lost_job = self.active.get(job_id)
            if lost_job is not None:
                log.warning("queue %s: lost the lock of job #%s (it expired); the stall checker hands the job out "
                            "again, so this run is aborted", self.queue, job_id)
                lost_job.signal.abort("lock lost")
