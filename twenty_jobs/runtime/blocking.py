"""What a blocking handler (a plain `def`, run on a thread: runtime/threads.py) gets as `ctx`.

    @twenty_jobs.job(queue="embeddings", name="embed")
    def embed(data: dict, ctx: twenty_jobs.BlockingJobContext) -> list[float]:
        ctx.update_progress(10)            # plain calls: they run on the worker's loop and wait
        if ctx.aborted:                    # shutdown deadline or lost lock
            raise twenty_jobs.RetryJob("interrupted")
        return model.encode(data["text"])

The same job facts as JobContext, with the actions as plain functions: each runs on the worker's
event loop and waits for it there, so the thread never touches the loop's connections itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from twenty_jobs.runtime.context import JobContext, JobLogger

if TYPE_CHECKING:
    from twenty_jobs.runtime.lifecycle import WorkerContext
    from twenty_jobs.runtime.producer import Producer
    from twenty_jobs.wire.job import JobRecord

T = TypeVar("T")


class BlockingJobContext:
    """Handed to `def handler(data, ctx)`: the JobContext of the job, usable from its thread."""

    __slots__ = ("_ctx", "_loop")

    def __init__(self, ctx: JobContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop

    # -- who the job is (as JobContext) -------------------------------------------------------------

    @property
    def job(self) -> JobRecord:
        return self._ctx.job

    @property
    def queue(self) -> str:
        return self._ctx.queue

    @property
    def job_id(self) -> str:
        return self._ctx.job_id

    @property
    def name(self) -> str:
        return self._ctx.name

    @property
    def data(self) -> Any:
        return self._ctx.data

    @property
    def workspace_id(self) -> str | None:
        return self._ctx.workspace_id

    @property
    def attempts_made(self) -> int:
        return self._ctx.attempts_made

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    @property
    def max_attempts(self) -> int:
        return self._ctx.max_attempts

    @property
    def retry_limit(self) -> int:
        return self._ctx.retry_limit

    @property
    def is_last_attempt(self) -> bool:
        return self._ctx.is_last_attempt

    @property
    def timestamp(self) -> int:
        return self._ctx.timestamp

    @property
    def opts(self) -> dict[str, Any]:
        return self._ctx.opts

    @property
    def progress(self) -> Any:
        return self._ctx.progress

    @property
    def logger(self) -> JobLogger:
        return self._ctx.logger

    @property
    def producer(self) -> Producer:
        """Async: call it through `ctx.run(ctx.producer.add(...))`."""
        return self._ctx.producer

    @property
    def worker(self) -> WorkerContext:
        return self._ctx.worker

    # -- the abort signal ----------------------------------------------------------------------------

    @property
    def aborted(self) -> bool:
        """True once the worker asked this job to stop (shutdown deadline, lost lock). A thread
        cannot be interrupted: check this between steps and return or raise."""
        return self._ctx.aborted

    @property
    def abort_reason(self) -> str | None:
        return self._ctx.signal.reason if self._ctx.signal is not None else None

    def wait_aborted(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early when the job is aborted; returns `aborted`."""
        signal = self._ctx.signal
        if signal is None:
            raise ValueError("this job has no abort signal")
        with contextlib.suppress(TimeoutError):
            self.run(asyncio.wait_for(signal.wait(), timeout_s))
        return self.aborted

    # -- what the job may do (JobContext's actions, as plain calls) -------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the worker's event loop and wait for its result (e.g.
        `ctx.run(ctx.producer.add(...))`)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        self.run(self._ctx.update_progress(progress))

    def update_data(self, data: Any) -> None:
        self.run(self._ctx.update_data(data))

    def log(self, message: str) -> None:
        self.run(self._ctx.log(message))

    def rate_limit(self, duration_ms: int) -> None:
        """As JobContext.rate_limit; then `raise twenty_jobs.RateLimitError()`."""
        self.run(self._ctx.rate_limit(duration_ms))
