"""The worker runtime: one BullMQ worker per served queue, routing jobs to Python handlers.

The hot path (fetch a job, run its handler, finish it and fetch the next in the same Lua call)
lives in `QueueWorker.processJob`, a thin layer over the BullMQ port's Lua scripts. Everything
else here is lifecycle: connections, start-up checks, signals, the bounded shutdown drain, burst
mode.

Fixes over the bare port, each tied to a measured trap (baseline.md, bullmq-python.md):
* the blocking connection learns the Redis version, so delayed jobs and backoff retries are not
  rounded up to whole seconds (F2);
* `moveToFinished` fetches the next job (1 round trip per job instead of 2, F3);
* one long-lived task per concurrency slot, and one slot blocking on the marker for all the idle
  ones, instead of a task per job and a burst of empty `moveToActive` calls per wake-up (F4);
* concurrent slots pipeline their commands on one socket (connection.PipelinedConnection) instead of
  taking turns on it; job options are parsed once per distinct opts string and the
  moveToFinished arguments are built with the per-queue parts cached (wire/finish.py). `make
  bench` (benchmarks/) measures all this against Twenty's Node worker;
* the blocking connection is named `<prefix>:<base64(queue)>` so Node's `getWorkers()` and
  Twenty's health page count Python workers (§8.6);
* unparseable job data, an unknown job name or a non-JSON return value fail the job with a reason
  instead of wedging it in `active` or completing it silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from bullmq import Job, Worker
from bullmq.backends import RedisBackend
from bullmq.backoffs import Backoffs
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from bullmq.job import getReturnValue, optsFromJSON
from bullmq.redis_connection import RedisConnection
from bullmq.timer import Timer
from pydantic import BaseModel

from twenty_jobs.connection.client import make_client, make_command_connection, ping_or_raise
from twenty_jobs.errors import ConfigError, PermanentJobError, RetryJob
from twenty_jobs.runtime.context import JobContext, workspace_id_of
from twenty_jobs.runtime.hooks import run_shutdown_hooks
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import JobHandler, Registry, default_registry
from twenty_jobs.settings import DEFAULT_REDIS_URL
from twenty_jobs.twenty.queues import QueueConfig, queue_config
from twenty_jobs.wire.compat import check_queues
from twenty_jobs.wire.finish import CompletedArgs
from twenty_jobs.wire.keys import (
    DEFAULT_PREFIX,
    METRICS_ONE_WEEK_POINTS,
    queue_key,
    worker_client_name,
)
from twenty_jobs.wire.lua import script

log = logging.getLogger("twenty_jobs.runtime.worker")
job_log = logging.getLogger("twenty_jobs.job")

# BullMQ's default stalled-check interval, which Twenty does not change.
DEFAULT_STALLED_INTERVAL_MS = 30_000
# How long the idle BZPOPMIN blocks before re-arming (BullMQ's drainDelay, seconds).
DEFAULT_DRAIN_DELAY_S = 5
# How often --burst looks at the queue counts.
BURST_POLL_S = 0.1
# Job ids of scheduler iterations start with this; --burst does not wait for future iterations.
SCHEDULER_JOB_ID_PREFIX = "repeat:"
# A slot that died of an unexpected error is restarted after this pause (no hot loop).
SLOT_RESTART_DELAY_S = 0.1
# Distinct job-options strings whose parsed form is kept (Twenty: one or two per queue).
OPTS_CACHE_SIZE = 256


@dataclass(slots=True)
class WorkerConfig:
    """What `twenty-jobs work` runs. Per-queue values default to Twenty's table."""

    queues: list[str]
    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    concurrency: int | None = None
    burst: bool = False
    grace_s: float = 30.0
    lock_duration_ms: int | None = None
    stalled_interval_ms: int | None = None
    max_stalled_count: int | None = None
    drain_delay_s: float = DEFAULT_DRAIN_DELAY_S
    allow_custom_queues: bool = True
    install_signal_handlers: bool = True
    observers: list[JobObserver] = field(default_factory=list)
    services: list[WorkerService] = field(default_factory=list)


class JobObserver(Protocol):
    """Told about every job; used by logging, metrics and the heartbeat. Must not raise or block."""

    def job_started(self, queue: str, job: Job) -> None: ...

    def job_finished(
        self, queue: str, job: Job, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None: ...

    def job_stalled(self, queue: str, job_id: str) -> None: ...


class WorkerService(Protocol):
    """Something that runs beside the workers for the life of the process (heartbeat, metrics
    endpoint). Started after the queue workers exist, stopped after they have drained."""

    async def start(self, worker: TwentyWorker) -> None: ...

    async def stop(self) -> None: ...


class JobLogObserver:
    """One line when a job starts and one when it ends (queue, name, id, workspace, attempt, outcome)."""

    def job_started(self, queue: str, job: Job) -> None:
        if job_log.isEnabledFor(logging.INFO):
            ws = workspace_id_of(job.data)
            _log_job(
                logging.INFO, _STARTED_AT, "start %s %s #%s attempt %d%s",
                (queue, job.name, job.id, job.attemptsMade + 1, f" [workspace={ws}]" if ws else ""),
                {"queue": queue, "job_name": job.name, "job_id": job.id, "workspace_id": ws,
                 "attempt": job.attemptsMade + 1},
            )

    def job_finished(
        self, queue: str, job: Job, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None:
        level = logging.INFO if outcome == "completed" else logging.WARNING
        if job_log.isEnabledFor(level):
            reason = f": {error}" if error is not None else ""
            ws = workspace_id_of(job.data)
            _log_job(
                level, _FINISHED_AT, "%s %s %s #%s attempt %d in %.1f ms%s%s",
                (outcome, queue, job.name, job.id, job.attemptsMade, duration_ms,
                 f" [workspace={ws}]" if ws else "", reason),
                {"queue": queue, "job_name": job.name, "job_id": job.id, "workspace_id": ws,
                 "attempt": job.attemptsMade, "duration_ms": round(duration_ms, 3), "outcome": outcome},
            )

    def job_stalled(self, queue: str, job_id: str) -> None:
        job_log.warning("stalled %s #%s: moved back to wait by the stall checker", queue, job_id)


# Where the two per-job lines come from (file, line, function), computed once: `Logger.info`
# would walk the stack for it on every line (findCaller, ~10% of a line's cost).
_STARTED_AT = (__file__, JobLogObserver.job_started.__code__.co_firstlineno, "job_started")
_FINISHED_AT = (__file__, JobLogObserver.job_finished.__code__.co_firstlineno, "job_finished")


def _log_job(level: int, where: tuple[str, int, str], msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    """`job_log.log(level, msg, *args, extra=extra)` with the caller given instead of looked up."""
    job_log.handle(job_log.makeRecord(job_log.name, level, where[0], where[1], msg, args, None, where[2], extra))


class _UnreadableJob(Exception):
    """Marks a fetched job whose stored data or opts are not valid JSON."""


class QueueWorker(Worker):  # type: ignore[misc]
    """A bullmq Worker for one queue, with twenty-jobs' connections, routing and hot path."""

    # Set by the port's (untyped) Worker.__init__; read and written by the run loop here.
    running: bool
    drained: bool

    def __init__(
        self,
        queue: QueueConfig,
        handlers: dict[str, JobHandler],
        config: WorkerConfig,
        producer: Producer,
        observers: list[JobObserver],
    ) -> None:
        self.queue_config = queue
        self.handlers = handlers
        self.producer = producer
        self.observers = observers
        self.unreadable: dict[str, str] = {}
        self.started_at: dict[str, float] = {}
        opts: dict[str, Any] = {
            "prefix": config.prefix,
            "autorun": False,
            "concurrency": config.concurrency or queue.concurrency,
            "lockDuration": config.lock_duration_ms or queue.lock_duration_ms,
            "maxStalledCount": (
                config.max_stalled_count if config.max_stalled_count is not None else queue.max_stalled_count
            ),
            "stalledInterval": config.stalled_interval_ms or DEFAULT_STALLED_INTERVAL_MS,
            "drainDelay": config.drain_delay_s,
            # Twenty's worker option; its admin charts read these per-minute series (getMetrics).
            "metrics": {"maxDataPoints": METRICS_ONE_WEEK_POINTS},
            # Never let the port build its own clients (we replace the backend right below).
            "connection": {"host": "127.0.0.1"},
        }
        super().__init__(queue.name, self._route, opts)
        # Replace the port's connections with ours: socket_timeout=None, logged infinite
        # reconnects, and the blocking connection named the way Node names it.
        main = make_client(config.redis_url, what=f"{queue.name} commands", retry_forever=True)
        # The hot path's moveToFinished runs on a pipelined connection of its own (processJob).
        self.commands = make_command_connection(config.redis_url, what=f"{queue.name} hot path")
        blocking = make_client(
            config.redis_url,
            what=f"{queue.name} blocking wait",
            retry_forever=True,
            client_name=worker_client_name(config.prefix, queue.name),
        )
        self.backend = RedisBackend(
            queue.name, RedisConnection(main), RedisConnection(blocking), config.prefix, owns_connection=True
        )
        self.redisConnection = self.backend.connection
        self.blockingRedisConnection = self.backend.blocking_connection
        self.client = self.backend.conn
        self.bclient = self.backend.bclient
        self.scripts = self.backend.scripts
        self.keys = self.backend.keys
        self.qualifiedName = self.backend.qualifiedName
        # The name is set by redis-py on connect (and after every reconnect) via client_name.
        self._client_name_set = True
        # Run-loop state (see run()): parked slots and the fetch token counter.
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        self._token_postfix = 0
        # Hot path: the port's moveToFinished script and its arguments with the per-queue parts
        # computed once; parsed job options per distinct opts string.
        self._move_to_finished = script("moveToFinished")
        self._completed_args = CompletedArgs(self.scripts.keys, self.scripts.toKey("metrics:completed"), self.opts)
        self._opts_cache: dict[str, tuple[dict[str, Any], Any]] = {}

    async def prepare(self) -> None:
        """Learn the Redis version on the blocking connection too; without it every BZPOPMIN
        timeout is rounded up to whole seconds and delayed jobs start up to 1 s late (F2)."""
        await self.backend.connection.getRedisVersion()
        await self.backend.blocking_connection.getRedisVersion()

    async def run(self) -> None:
        """The port's run loop, restructured around one long-lived task per concurrency slot.

        The port keeps a set of futures and, for every finished job, waits on the whole set
        (`asyncio.wait`), creates a task for the next job, and fires one `moveToActive` per free
        slot at each wake-up, most of them coming back empty (baseline.md F4). Here each slot
        loops on its own: run a job, and take the next one from the `moveToFinished` reply. A slot
        that finds the queue empty parks; exactly one slot blocks on the marker (BZPOPMIN) for
        all of them, and a slot that gets work wakes one parked slot, which wakes the next if it
        gets work too. Pause, close and forced close behave as in the port: slots are the tasks
        in `self.processing`, and they return once paused or closing (after their current job).
        """
        await self.prepare()
        # Node checks for stalled jobs at start; the port waits a whole interval first.
        await self.runStalledJobsCheck()
        if self.running:
            raise RuntimeError("Worker is already running")
        await self._ensure_client_names()
        self.lockManager.start()
        self.stalledCheckTimer = Timer(self.opts["stalledInterval"] / 1000, self.runStalledJobsCheck, self.emit)
        self.running = True
        try:
            while not self.closed and not self.closing:
                if self.paused:
                    await self.resume_event.wait()
                    continue
                self.processing = {asyncio.ensure_future(self._slot()) for _ in range(self.opts["concurrency"])}
                await asyncio.wait(self.processing)
                for task in self.processing:
                    if not task.cancelled() and task.exception() is not None:
                        self.emit("error", task.exception())
                        await asyncio.sleep(SLOT_RESTART_DELAY_S)
        finally:
            # As the port: release the background work even when cancelled.
            self.running = False
            if not self.closing:
                for task in self.processing:
                    if not task.done():
                        task.cancel()
                if self.waiting and not self.waiting.done():
                    self.waiting.cancel()
                if self.processing:
                    await asyncio.gather(*self.processing, return_exceptions=True)
                self.processing.clear()
            if self.stalledCheckTimer is not None:
                with contextlib.suppress(Exception):
                    self.stalledCheckTimer.stop()
            await self.lockManager.close()

    async def _slot(self) -> None:
        """One concurrency slot: fetch, run, finish-and-fetch-next, until paused or closing."""
        job: Job | None = None
        while True:
            if job is None:
                if self.closing or self.paused:
                    return
                job = await self._fetch()
                continue
            if self._parked:
                # Work is flowing: let a parked slot look for more.
                self._wake_one()
            try:
                job = await self.processJob(job, job.token)
            except Exception as err:  # an event listener raised; the job itself was handled
                self.emit("error", err)
                job = None

    async def _fetch(self) -> Job | None:
        """The next job for a slot, or None (re-check pause/close) after parking or a failed fetch."""
        if self.drained and self.waiting is not None:
            # Another slot is already blocked on the marker for everyone.
            await self._park()
            return None
        self._token_postfix += 1
        token = f"{self.id}:{self._token_postfix}"
        job: Job | None = await self.retryIfFailed(
            lambda: self.getNextJob(token),
            {"delay_in_ms": self.opts["runRetryDelay"], "only_emit_error": True},
        )
        return job

    async def _park(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def _wake_one(self) -> None:
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)

    async def close(self, force: bool = False) -> Any:  # Any: the port's close is untyped
        # Parked slots re-check `closing` (set by the port's close before its first await).
        asyncio.get_running_loop().call_soon(self._wake_all)
        try:
            await super().close(force)
        finally:
            await self.commands.aclose()

    async def pause(self, do_not_wait_active: bool = False) -> None:
        asyncio.get_running_loop().call_soon(self._wake_all)
        await super().pause(do_not_wait_active)

    # -- routing ---------------------------------------------------------------------------------

    async def _route(self, job: Job, token: str, signal: Any) -> Any:
        reason = self.unreadable.pop(str(job.id), None)
        if reason is not None:
            raise PermanentJobError(reason)
        handler = self.handlers.get(job.name)
        if handler is None:
            served = ", ".join(sorted(self.handlers)) or "none"
            raise PermanentJobError(
                f"no handler for job '{job.name}' on queue '{self.name}' in this twenty-jobs worker "
                f"(it handles: {served}); register one with @twenty_jobs.job(queue='{self.name}', "
                f"name='{job.name}') or stop serving this queue here"
            )
        ctx = JobContext(job, self.name, token, signal, self.producer, job_log)
        return _json_return_value(await handler(job.data, ctx), job.name)

    # -- hot path --------------------------------------------------------------------------------

    async def nextJobFromJobData(
        self,
        job_data: dict[str, Any] | None = None,
        job_id: str | None = None,
        limit_until: int = 0,
        delay_until: int = 0,
        token: str | None = None,
    ) -> Job | None:
        """The port's `Worker.nextJobFromJobData`, with the Job built by `_job_from_hash`, and a
        job whose stored data or opts cannot be parsed turned into a job that fails with the
        reason (instead of an exception that leaves it active until the stall checker)."""
        self.limitUntil = max(limit_until, 0) or 0
        if not job_data:
            if not self.drained:
                self.drained = True
                self.blockUntil = 0
        if delay_until:
            self.blockUntil = max(int(delay_until), 0) or 0
        if not job_data:
            return None
        self.drained = False
        try:
            job = self._job_from_hash(job_data, job_id)
        except (ValueError, TypeError) as exc:
            if not job_id:
                raise
            # Node wrote something Python cannot parse (or a corrupted hash): fail the job with the
            # reason rather than leaving it active until the stall checker loops on it forever.
            job = Job(self, job_data.get("name") or "<no name>", None, {"attempts": 1}, job_id)
            job.token = token
            job.attemptsMade = int(job_data.get("atm") or job_data.get("attemptsMade") or 0)
            self.unreadable[str(job_id)] = (
                f"job {job_id} on queue '{self.name}' has unreadable data or options ({exc}); "
                "it was written by something other than BullMQ's JSON encoder"
            )
            return job
        job.token = token
        if job.repeatJobKey:
            # As the port (and Node): materialize the scheduler's next iteration.
            try:
                await self.retryIfFailed(
                    lambda: self._scheduleNextIteration(job), {"delay_in_ms": self.opts.get("runRetryDelay")}
                )
            except Exception as err:
                self.emit("error", RuntimeError(f"Failed to add repeatable job for next iteration: {err}"))
        return job

    def _job_from_hash(self, fields: dict[str, Any], job_id: str | None) -> Job:
        """`Job.fromJSON(self, fields, job_id)`, attribute for attribute, without re-parsing and
        re-deriving the job options on every job: Twenty's jobs of one queue carry the same opts
        string, so the parsed options are cached per string and each job gets a fresh copy."""
        raw_opts = fields.get("opts", "{}")
        derived = self._opts_cache.get(raw_opts)
        if derived is None:
            derived = _derive_opts(raw_opts)
            if derived is None:  # parent options and other rarities: the port's own code
                job: Job = Job.fromJSON(self, fields, job_id)
                return job
            if len(self._opts_cache) >= OPTS_CACHE_SIZE:
                self._opts_cache.clear()
            self._opts_cache[raw_opts] = derived
        opts, attempts = derived
        job = Job.__new__(Job)
        # Job.__init__ ...
        job.name = fields.get("name")
        job.progress = 0
        job.discarded = False
        job.opts = job_opts = _fresh(opts)
        job.queue = self
        job.attempts = attempts
        job.attemptsStarted = 0
        job.data = json.loads(fields.get("data", "{}"))
        # The same objects as in job.opts, as Job.__init__ has them.
        job.removeOnComplete = job_opts.get("removeOnComplete", True)
        job.removeOnFail = job_opts.get("removeOnFail", False)
        job.processedOn = 0
        job.finishedOn = 0
        job.returnvalue = None
        job.deferredFailure = None
        job.failedReason = None
        job.repeatJobKey = None
        job.token = None
        job.parentKey = None
        job.parent = None
        job.stacktrace = []
        job.deduplication_id = None
        job.backend = self.backend
        job.queueQualifiedName = self.qualifiedName
        # ... then Job.fromJSON.
        job.id = job_id or fields.get("id", b"").decode("utf-8")
        progress = fields.get("progress")
        job.progress = 0 if progress is None else json.loads(progress)
        job.delay = int(fields.get("delay", "0"))
        job.priority = int(fields.get("priority", "0"))
        job.timestamp = int(fields.get("timestamp", "0"))
        if fields.get("finishedOn"):
            job.finishedOn = int(fields["finishedOn"])
        if fields.get("processedOn"):
            job.processedOn = int(fields["processedOn"])
        if fields.get("rjk"):
            job.repeatJobKey = fields["rjk"]
        if fields.get("ats"):
            job.attemptsStarted = int(fields["ats"])
        if fields.get("failedReason"):
            job.failedReason = fields["failedReason"]
        job.attemptsMade = int(fields.get("attemptsMade") or fields.get("atm") or "0")
        job.stalledCounter = int(fields.get("stc") or "0")
        if fields.get("defa"):
            job.deferredFailure = fields["defa"]
        returnvalue = fields.get("returnvalue")
        if type(returnvalue) is str:
            job.returnvalue = getReturnValue(returnvalue)
        stacktrace = fields.get("stacktrace")
        if stacktrace is not None:
            job.stacktrace = json.loads(stacktrace)
        if fields.get("parentKey"):
            job.parentKey = fields["parentKey"]
        if fields.get("parent"):
            job.parent = json.loads(fields["parent"])
        return job

    async def processJob(self, job: Job, token: str) -> Job | None:
        """Run one job, finish it and return the next one fetched by the same Lua call (or None)."""
        next_job: Job | None = None
        started = time.perf_counter()
        for obs in self.observers:
            obs.job_started(self.name, job)
        try:
            self.jobs.add((job, token))
            controller = self.lockManager.track_job(
                job.id, token, int(time.time() * 1000), should_create_controller=True
            )
            if job.deferredFailure:
                # A stall checker failed this job lazily (BullMQ >= 5.53: `defa`).
                raise UnrecoverableError(job.deferredFailure)
            # The handler runs in a context of its own, as every job did in the port (one task per
            # job there), so context variables a handler sets (logging or tracing context) do not
            # leak into the next job of this slot.
            result = await _InContext(
                self.processor(job, token, controller.signal if controller else None), contextvars.copy_context()
            )
            if not self.forceClosing:
                fetch_next = not (self.closing or self.paused)
                # The port's backend.moveToCompleted, on our pipelined connection (wire/finish.py).
                keys, args = self._completed_args.build(
                    job, result, job.opts.get("removeOnComplete", False), token, fetch_next
                )
                raw = await self.commands.run_script(self._move_to_finished, keys, args, idempotent=False)
                if type(raw) is int and raw < 0:
                    raise self.scripts.finishedErrors(
                        {"code": raw, "jobId": job.id, "command": "moveToFinished", "state": "active"}
                    )
                job.returnvalue = result
                job.attemptsMade += 1
                if fetch_next:
                    # raw: 0, or [job hash as a flat list | 0, job id | 0, limitUntil, delayUntil].
                    if raw and raw[0]:
                        it = iter(raw[0])
                        limit, delay = (raw[2] or 0, raw[3] or 0) if len(raw) > 2 else (0, 0)
                        fields = dict(zip(it, it, strict=False))
                        next_job = await self.nextJobFromJobData(fields, raw[1], limit, delay, token)
                    elif raw:
                        limit, delay = (raw[2] or 0, raw[3] or 0) if len(raw) > 2 else (0, 0)
                        await self.nextJobFromJobData(None, None, limit, delay, token)
                    else:
                        await self.nextJobFromJobData(None, None, 0, 0, token)
            self._notify(job, "completed", started, None)
            self.emit("completed", job, result)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as err:
            try:
                if not self.forceClosing:
                    _apply_retry_delay(job, err)
                    await job.moveToFailed(err, token)
                final = job.attemptsMade >= max(1, int(job.opts.get("attempts") or 1)) or isinstance(
                    err, UnrecoverableError
                )
                self._notify(job, "failed" if final else "retrying", started, err)
                self.emit("failed", job, err)
            except Exception as move_err:
                self._notify(job, "error", started, move_err)
                self.emit("error", move_err, job)
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
        return next_job

    def _notify(self, job: Job, outcome: str, started: float, error: BaseException | None) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        for obs in self.observers:
            try:
                obs.job_finished(self.name, job, outcome, duration_ms, error)
            except Exception:
                log.exception("job observer failed")


class _InContext:
    """Await a coroutine with each of its steps run inside `ctx` (a copied contextvars.Context).

    What a task per job gives the handler (its context variables stay its own) without a task
    per job: no task to create and no extra event-loop turns to start it and to hear it finish
    (measured: 25% of the throughput at concurrency 1). The awaiting task passes every future
    the coroutine yields up to the loop and sends or throws the outcome back, as asyncio's Task
    does, so cancellation reaches the handler exactly as before. `asyncio.current_task()` is the
    slot's task (shared by the slot's successive jobs).
    """

    __slots__ = ("coro", "ctx")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context) -> None:
        self.coro = coro
        self.ctx = ctx

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self.coro, self.ctx.run
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = run(coro.send, value)
                else:
                    yielded = run(coro.throw, error)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: it belongs to the handler
                value, error = None, exc


def _derive_opts(raw_opts: str) -> tuple[dict[str, Any], Any] | None:
    """What `Job.__init__` derives from a job's stored opts: (its final opts, attempts). None
    when the opts need the port's full treatment (parent, deduplication, mutually exclusive
    parent flags), which `_job_from_hash` then leaves to `Job.fromJSON`."""
    opts = optsFromJSON(json.loads(raw_opts))  # raises ValueError/TypeError like Job.fromJSON
    if opts.get("parent") or opts.get("deduplication") or any(opts.get(k) for k in _PARENT_FLAGS):
        return None
    final = {"attempts": 0, "delay": 0}
    final.update(opts)
    final["backoff"] = Backoffs.normalize(opts.get("backoff"))
    return final, opts.get("attempts", 1)


# Job options that tie a job to a parent (flows); Twenty's jobs never carry them.
_PARENT_FLAGS = ("removeDependencyOnFailure", "failParentOnFailure", "continueParentOnFailure",
                 "ignoreDependencyOnFailure")


def _fresh(value: Any) -> Any:
    """A copy of parsed-JSON options, so no job shares a mutable dict or list with another."""
    kind = type(value)
    if kind is dict:
        return {k: _fresh(v) for k, v in value.items()}
    if kind is list:
        return [_fresh(v) for v in value]
    return value


def _json_return_value(value: Any, job_name: str) -> Any:
    """Return values are stored as JSON (Node reads them); make that explicit and fail clearly."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PermanentJobError(
            f"handler of '{job_name}' returned a value that is not JSON ({exc}); return plain "
            "dicts/lists/str/int/float/bool/None or a pydantic model"
        ) from None
    return value


def _apply_retry_delay(job: Job, err: BaseException) -> None:
    """Decide the retry delay the way Node does, where the port does not.

    * `RetryJob(delay_ms=N)` from a handler: retry after N ms whatever the job's backoff.
    * `backoff.jitter` (Twenty's email backoff uses 0.5): the port ignores jitter; Node draws the
      delay uniformly from [delay * (1 - jitter), delay].
    The port then reads the (in-memory only) fixed delay we leave in `job.opts["backoff"]`.
    """
    backoff = job.opts.get("backoff")
    if isinstance(err, RetryJob) and err.delay_ms is not None:
        job.opts["backoff"] = {"type": "fixed", "delay": max(0, int(err.delay_ms))}
        return
    if not isinstance(backoff, dict) or not backoff.get("jitter"):
        return
    base = int(backoff.get("delay") or 0)
    attempt = job.attemptsMade + 1
    if backoff.get("type") == "exponential":
        base = round(2 ** (attempt - 1) * base)
    elif backoff.get("type") != "fixed":
        return
    jitter = min(max(float(backoff["jitter"]), 0.0), 1.0)
    delay = int(base * (1 - jitter) + random.random() * base * jitter)
    job.opts["backoff"] = {"type": "fixed", "delay": delay}


class TwentyWorker:
    """Runs one QueueWorker per served queue until stopped (signal, burst, or `stop()`)."""

    def __init__(self, config: WorkerConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry
        self.workers: list[QueueWorker] = []
        self.producer: Producer | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._signals = 0
        self._client: aioredis.Redis | None = None
        self.exit_code = 0
        self.started = asyncio.Event()

    def queue_configs(self) -> list[QueueConfig]:
        configs = []
        for name in self.config.queues:
            cfg = queue_config(name, allow_custom=self.config.allow_custom_queues)
            if not self.registry.names(name):
                raise ConfigError(
                    f"queue '{name}' has no handlers in this process, so every job would fail; "
                    "load the module that declares them with --import, or leave the queue to Node"
                )
            configs.append(cfg)
        if not configs:
            raise ConfigError(
                "no queue to serve: no handlers are registered for the selected queues "
                "(check --queue/--exclude-queue, WORKER_ENABLED_QUEUES/WORKER_EXCLUDED_QUEUES and --import)"
            )
        return configs

    async def start(self) -> None:
        configs = self.queue_configs()
        self._client = make_client(self.config.redis_url, what="worker control")
        await ping_or_raise(self._client, self.config.redis_url)
        # Know what we share keys with: Node bullmq < 6 and legacy repeatables (bullmq-python.md §5).
        for found in await check_queues(self._client, self.config.prefix, [c.name for c in configs]):
            if found.warning:
                log.warning("%s", found.warning)
        self.producer = Producer(
            self.config.redis_url, prefix=self.config.prefix, allow_any_queue=True, registry=self.registry
        )
        observers: list[JobObserver] = [JobLogObserver(), *self.config.observers]
        for cfg in configs:
            worker = QueueWorker(cfg, self.registry.for_queue(cfg.name), self.config, self.producer, observers)
            worker.on("error", _log_worker_error(cfg.name))
            worker.on("stalled", _on_stalled(cfg.name, observers))
            self.workers.append(worker)
        for worker in self.workers:
            log.info(
                "serving %s (concurrency %d, lock %d ms) for jobs: %s",
                worker.name, worker.opts["concurrency"], worker.opts["lockDuration"],
                ", ".join(worker.handlers),
            )
        self.started.set()

    async def run(self) -> int:
        """Serve until stopped; returns the process exit code (0 after a clean drain)."""
        await self.start()
        loop = asyncio.get_running_loop()
        if self.config.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig)
        runs = [asyncio.ensure_future(w.run()) for w in self.workers]
        started_services: list[WorkerService] = []
        for service in self.config.services:
            await service.start(self)
            started_services.append(service)
        burst = asyncio.ensure_future(self._burst_monitor()) if self.config.burst else None
        try:
            stopper = asyncio.ensure_future(self._stop_requested.wait())
            done, _ = await asyncio.wait([*runs, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    log.error("a queue worker stopped unexpectedly: %r", task.exception())
                    self.exit_code = 1
            await self._shutdown(runs)
            stopper.cancel()
        finally:
            if burst is not None:
                burst.cancel()
            for service in reversed(started_services):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %r failed", service)
            if self.config.install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self._close_clients()
        return self.exit_code

    def request_stop(self, sig: int | None = None) -> None:
        """First call: stop fetching and drain within the grace period. Second: stop at once."""
        self._signals += 1
        if self._signals == 1:
            log.warning(
                "%s received: finishing active jobs (up to %.0f s; signal again to stop now)",
                signal.Signals(sig).name if sig else "stop", self.config.grace_s,
            )
            self._stop_requested.set()
        else:
            log.warning("second stop request: stopping now; active jobs are left to stall recovery")
            self._force.set()
            self._stop_requested.set()

    async def _shutdown(self, runs: Iterable[asyncio.Future[Any]]) -> None:
        graceful = asyncio.ensure_future(asyncio.gather(*(w.close() for w in self.workers), return_exceptions=True))
        forced = asyncio.ensure_future(self._force.wait())
        done, _ = await asyncio.wait([graceful, forced], timeout=self.config.grace_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if graceful not in done:
            active = sum(len(w.jobs) for w in self.workers)
            log.warning("stopping with %d job(s) still active: they stay in Redis and will be recovered "
                        "by the stall checker after their lock expires", active)
            self.exit_code = self.exit_code or 1
            for worker in self.workers:
                worker.forceClosing = True
                worker.lockManager.cancel_all_jobs("worker shutdown deadline")
                worker.cancelProcessing()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(w.backend.close(force=True) for w in self.workers), return_exceptions=True), 5
                )
            graceful.cancel()
        forced.cancel()
        for run in runs:
            if not run.done():
                run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await run_shutdown_hooks()

    async def _close_clients(self) -> None:
        if self.producer is not None:
            await self.producer.close()
        if self._client is not None:
            await self._client.aclose()

    async def pending_jobs(self, queue: str) -> int:
        """Jobs that still have to run on `queue` (waiting, prioritized, active, and delayed jobs
        that are not future iterations of a job scheduler)."""
        assert self._client is not None
        p = self.config.prefix
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(queue_key(p, queue, "wait"))
        pipe.zcard(queue_key(p, queue, "prioritized"))
        pipe.llen(queue_key(p, queue, "active"))
        pipe.llen(queue_key(p, queue, "paused"))
        pipe.zrange(queue_key(p, queue, "delayed"), 0, 999)
        wait, prioritized, active, paused, delayed = await pipe.execute()
        one_off_delayed = sum(1 for jid in delayed if not str(jid).startswith(SCHEDULER_JOB_ID_PREFIX))
        return int(wait) + int(prioritized) + int(active) + int(paused) + one_off_delayed

    async def _burst_monitor(self) -> None:
        """--burst: stop once every served queue has had nothing left to run for two checks in a row."""
        idle_checks = 0
        while not self._stop_requested.is_set():
            await asyncio.sleep(BURST_POLL_S)
            busy = sum([await self.pending_jobs(w.name) for w in self.workers])
            in_flight = sum(len(w.jobs) for w in self.workers)
            idle_checks = idle_checks + 1 if busy == 0 and in_flight == 0 else 0
            if idle_checks >= 2:
                log.info("burst: the served queues are empty; stopping")
                self._stop_requested.set()


def _log_worker_error(queue: str) -> Callable[..., None]:
    def on_error(err: BaseException, job: Job | None = None) -> None:
        where = f" (job #{job.id})" if job is not None else ""
        log.error("queue %s%s: %s", queue, where, err)

    return on_error


def _on_stalled(queue: str, observers: list[JobObserver]) -> Callable[[str], None]:
    def on_stalled(job_id: str) -> None:
        for obs in observers:
            obs.job_stalled(queue, job_id)

    return on_stalled


async def run_worker(config: WorkerConfig, registry: Registry | None = None) -> int:
    """Run a worker until it is stopped; returns the exit code."""
    return await TwentyWorker(config, registry).run()
