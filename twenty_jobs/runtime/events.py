"""Job events: what every observer of the worker hears, for every job, however it was fetched
(by a slot's own fetch, or in the same script call that finished the previous job).

An observer implements `JobObserver` (`job_started`, `job_finished`, `job_stalled`, and
optionally `job_progress`); the worker's log lines, the heartbeat and the OpenTelemetry metrics
are observers. Code that embeds the worker can use `EventListener` instead and subscribe plain
callbacks to the events by name:

    events = EventListener()
    events.on("completed", lambda e: print(e.job.id, e.job.returnvalue))
    await run_worker(WorkerConfig(queues=[...], observers=[events]))

Observers run on the event loop in the middle of the hot path: they must not block, and what
they raise is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from twenty_jobs.wire.job import JobRecord

log = logging.getLogger("twenty_jobs.runtime.events")
job_log = logging.getLogger("twenty_jobs.job")

Outcome = Literal["completed", "failed", "retrying", "rate_limited", "error", "left"]
"""How an attempt ended: `completed`; `failed` for good; `retrying` (failed, another attempt will
follow); `rate_limited` (the handler raised RateLimitError: the job is back in wait, the attempt
not used); `error` (the worker could not record the outcome, e.g. its lock was lost: the stall
checker will hand the job out again); `left` (its handler handed it off, HandOffJob, or it has no
handler here, and with `--unknown-jobs leave` it went back to the queue for another consumer, its
attempt not used)."""


class JobObserver(Protocol):
    """Told about every job. A `job_progress(queue, job, progress)` method, when present, is
    called on every progress update too."""

    def job_started(self, queue: str, job: JobRecord) -> None: ...

    def job_finished(
        self, queue: str, job: JobRecord, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None: ...

    def job_stalled(self, queue: str, job_id: str) -> None: ...


class Observers:
    """Calls every observer for each event; an observer that raises is logged, never the job's
    problem. Built once per worker (the per-event lists skip observers without `job_progress`)."""

    __slots__ = ("_progress", "all")

    def __init__(self, observers: list[JobObserver]) -> None:
        self.all = list(observers)
        self._progress = [p for p in (getattr(o, "job_progress", None) for o in observers) if callable(p)]

    def started(self, queue: str, job: JobRecord) -> None:
        for obs in self.all:
            try:
                obs.job_started(queue, job)
            except Exception:
                log.exception("job observer %r failed on job_started", obs)

    def finished(self, queue: str, job: JobRecord, outcome: Outcome, duration_ms: float,
                 error: BaseException | None) -> None:
        for obs in self.all:
            try:
                obs.job_finished(queue, job, outcome, duration_ms, error)
            except Exception:
                log.exception("job observer %r failed on job_finished", obs)

    def progress(self, queue: str, job: JobRecord, progress: Any) -> None:
        for callback in self._progress:
            try:
                callback(queue, job, progress)
            except Exception:
                log.exception("job observer %r failed on job_progress", callback)

    def stalled(self, queue: str, job_id: str) -> None:
        for obs in self.all:
            try:
                obs.job_stalled(queue, job_id)
            except Exception:
                log.exception("job observer %r failed on job_stalled", obs)


EventName = Literal["started", "progress", "completed", "failed", "retried", "rate_limited", "error", "left",
                    "stalled"]
_OUTCOME_EVENT: dict[str, EventName] = {
    "completed": "completed", "failed": "failed", "retrying": "retried", "rate_limited": "rate_limited",
    "error": "error", "left": "left",
}


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event. `job` is None only for `stalled` (the stall checker knows just the id).

    After `completed`, `job.returnvalue` holds the handler's result; after `failed`/`retried`,
    `job.failed_reason` the error message; `job.attempts_made` counts the attempt just made."""

    name: EventName
    queue: str
    job_id: str
    job: JobRecord | None = None
    duration_ms: float = 0.0
    error: BaseException | None = None
    progress: Any = None


Callback = Callable[[JobEvent], None]


class EventListener:
    """A JobObserver that calls the callbacks subscribed to each event name."""

    def __init__(self) -> None:
        self.callbacks: dict[EventName, list[Callback]] = {}

    def on(self, name: EventName, callback: Callback) -> Callback:
        """Subscribe `callback` to the event `name` (started, progress, completed, failed,
        retried, rate_limited, error, left, stalled); returns `callback`."""
        self.callbacks.setdefault(name, []).append(callback)
        return callback

    def _emit(self, event: JobEvent) -> None:
        for callback in self.callbacks.get(event.name, ()):
            callback(event)

    def job_started(self, queue: str, job: JobRecord) -> None:
        if "started" in self.callbacks:
            self._emit(JobEvent("started", queue, job.id, job))

    def job_progress(self, queue: str, job: JobRecord, progress: Any) -> None:
        if "progress" in self.callbacks:
            self._emit(JobEvent("progress", queue, job.id, job, progress=progress))

    def job_finished(
        self, queue: str, job: JobRecord, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None:
        name = _OUTCOME_EVENT[outcome]
        if name in self.callbacks:
            self._emit(JobEvent(name, queue, job.id, job, duration_ms, error))

    def job_stalled(self, queue: str, job_id: str) -> None:
        if "stalled" in self.callbacks:
            self._emit(JobEvent("stalled", queue, job_id))


# The two per-job lines' messages (logging's %-style templates, also rendered by the CLI's fast job
# log writer, observability/job_lines.py, which must produce the same text).
STARTED_MESSAGE = "start %s %s #%s attempt %d%s"
FINISHED_MESSAGE = "%s %s %s #%s attempt %d in %.1f ms%s%s"


def workspace_note(job: JobRecord) -> str:
    ws = job.workspace_id
    return f" [workspace={ws}]" if ws else ""


@runtime_checkable
class JobLineWriter(Protocol):
    """A log handler that writes the two INFO lines of a job itself, without a LogRecord, exactly as
    its formatter would render the record JobLogObserver would log (the CLI's handler,
    observability/logs.py; docs/job-logs.md). It buffers them, so `flush` before the process ends."""

    def write_job_started(self, queue: str, job: JobRecord) -> None: ...

    def write_job_completed(self, queue: str, job: JobRecord, duration_ms: float) -> None: ...

    def flush(self) -> None: ...


def job_line_writer() -> JobLineWriter | None:
    """The handler that gets every record of the `twenty_jobs.job` logger, when it is the only one,
    nothing filters the records and it is a JobLineWriter; None otherwise."""
    if job_log.filters:
        return None
    handlers: list[logging.Handler] = []
    logger: logging.Logger | None = job_log
    while logger is not None:
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    if len(handlers) == 1 and isinstance(handlers[0], JobLineWriter) and not handlers[0].filters:
        return handlers[0]
    return None


class JobLogObserver:
    """One log line when a job starts and one when it ends (queue, name, id, workspace, attempt,
    outcome), at INFO, and WARNING for an attempt that did not complete.

    With `fast` (the default), when the logging setup sends the `twenty_jobs.job` records to a
    JobLineWriter alone (the CLI's, after `setup_logging`) at the time the observer is made, the
    INFO lines are handed to it directly (about 1 µs a line instead of 10-25); everything else, and
    every line in other setups, goes through `logging`. Levels are honoured either way."""

    def __init__(self, *, fast: bool = True) -> None:
        self.writer = job_line_writer() if fast else None

    def job_started(self, queue: str, job: JobRecord) -> None:
        if job_log.isEnabledFor(logging.INFO):
            if self.writer is not None:
                self.writer.write_job_started(queue, job)
                return
            ws = job.workspace_id
            _log_job(
                logging.INFO, _STARTED_AT, STARTED_MESSAGE,
                (queue, job.name, job.id, job.attempts_made + 1, workspace_note(job)),
                {"queue": queue, "job_name": job.name, "job_id": job.id, "workspace_id": ws,
                 "attempt": job.attempts_made + 1},
            )

    def job_finished(
        self, queue: str, job: JobRecord, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None:
        level = logging.INFO if outcome in ("completed", "left") else logging.WARNING
        if job_log.isEnabledFor(level):
            if self.writer is not None and level == logging.INFO:
                self.writer.write_job_completed(queue, job, duration_ms)
                return
            reason = f": {error}" if error is not None else ""
            ws = job.workspace_id
            _log_job(
                level, _FINISHED_AT, FINISHED_MESSAGE,
                (outcome, queue, job.name, job.id, job.attempts_made, duration_ms, workspace_note(job), reason),
                {"queue": queue, "job_name": job.name, "job_id": job.id, "workspace_id": ws,
                 "attempt": job.attempts_made, "duration_ms": round(duration_ms, 3), "outcome": outcome},
            )

    def job_stalled(self, queue: str, job_id: str) -> None:
        job_log.warning("stalled %s #%s: moved back to wait by the stall checker", queue, job_id)

    def flush(self) -> None:
        """Write the lines the writer still holds (the worker calls it when it stops)."""
        if self.writer is not None:
            self.writer.flush()


# Where the two per-job lines come from (file, line, function), computed once: `Logger.info`
# would walk the stack for it on every line (findCaller, ~10% of a line's cost).
_STARTED_AT = (__file__, JobLogObserver.job_started.__code__.co_firstlineno, "job_started")
_FINISHED_AT = (__file__, JobLogObserver.job_finished.__code__.co_firstlineno, "job_finished")


def _log_job(level: int, where: tuple[str, int, str], msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    """`job_log.log(level, msg, *args, extra=extra)` with the caller given instead of looked up."""
    job_log.handle(job_log.makeRecord(job_log.name, level, where[0], where[1], msg, args, None, where[2], extra))
