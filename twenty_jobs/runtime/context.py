"""What a handler gets besides its data: who the job is, and what it may do while running."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Protocol

from twenty_jobs.wire.job import JobRecord

if TYPE_CHECKING:
    from twenty_jobs.runtime.lifecycle import WorkerContext
    from twenty_jobs.runtime.locks import AbortSignal
    from twenty_jobs.runtime.producer import Producer


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that prefixes every line with the job's queue, name and id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('queue')} {extra.get('job_name')} #{extra.get('job_id')}] {msg}", kwargs


class JobActions(Protocol):
    """What a running job may change in Redis (the queue worker implements it)."""

    async def update_progress(self, job: JobRecord, progress: Any) -> None: ...

    async def add_log(self, job: JobRecord, line: str) -> None: ...

    async def update_data(self, job: JobRecord, data: Any) -> None: ...


class JobContext:
    """Handed to `async def handler(data, ctx)`.

    Mirrors what Twenty's processors get (`{abortSignal, retryLimit, updateData}`) plus the job's
    identity, progress, job logs (visible in bull-board and Node's `getJobLogs`), a producer to
    enqueue follow-up jobs on the same Redis, and the worker process's context with its shared
    resources (`ctx.worker`, runtime/lifecycle.py).
    """

    __slots__ = ("_actions", "_logger", "job", "producer", "queue", "signal", "worker")

    def __init__(
        self,
        job: JobRecord,
        queue: str,
        signal: AbortSignal | None,
        producer: Producer,
        worker: WorkerContext,
        actions: JobActions,
        logger: logging.Logger,
    ) -> None:
        self.job = job
        self.queue = queue
        self.signal = signal
        self.producer = producer
        self.worker = worker
        self._actions = actions
        self._logger = logger

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def data(self) -> Any:
        """The job data exactly as stored (before any validation)."""
        return self.job.data

    @property
    def workspace_id(self) -> str | None:
        """`data["workspaceId"]` when the data carries one, as Twenty reads it for logs and metrics."""
        return self.job.workspace_id or None

    @property
    def attempts_made(self) -> int:
        """Attempts finished before this one (0 on the first run), as BullMQ counts them."""
        return self.job.attempts_made

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.job.attempts_made + 1

    @property
    def max_attempts(self) -> int:
        return self.job.opts.attempts

    @property
    def retry_limit(self) -> int:
        """Twenty's `retryLimit = max(0, attempts - 1)`."""
        return self.max_attempts - 1

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def timestamp(self) -> int:
        """When the job was added, in epoch ms."""
        return self.job.timestamp

    @property
    def opts(self) -> dict[str, Any]:
        """The job's options as stored (BullMQ's names; a copy of your own)."""
        return copy.deepcopy(self.job.opts.raw)

    @property
    def progress(self) -> Any:
        """The job's stored progress (0 until set), as left by the previous attempt or this one."""
        return self.job.progress

    @property
    def aborted(self) -> bool:
        """True once the worker asked this job to stop (shutdown deadline, lost lock)."""
        return self.signal is not None and self.signal.aborted

    @property
    def logger(self) -> JobLogger:
        return JobLogger(
            self._logger,
            {"queue": self.queue, "job_name": self.name, "job_id": self.job_id, "workspace_id": self.workspace_id},
        )

    async def update_data(self, data: Any) -> None:
        """Replace the stored job data (a retry then sees the new data), like Twenty's `updateData`."""
        await self._actions.update_data(self.job, data)

    async def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        await self._actions.update_progress(self.job, progress)

    async def log(self, message: str) -> None:
        """Append a line to the job's log list (trimmed to the job's `keepLogs`)."""
        await self._actions.add_log(self.job, message)


def workspace_id_of(data: Any) -> str | None:
    """Twenty's get-workspace-id-from-job-data: a non-empty string `workspaceId` at the top level."""
    if isinstance(data, dict):
        value = data.get("workspaceId")
        if isinstance(value, str) and value:
            return value
    return None
