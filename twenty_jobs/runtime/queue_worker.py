"""One queue's worker: `concurrency` slots that fetch a job, run its handler, and finish it and
fetch the next in the same script call.

The hot path, per job: one moveToFinished call (finish + fetch next) and the handler; nothing else
goes to Redis (docs/traps.md F3, F4). Each slot is one long-lived task. A slot that finds the queue
empty parks; exactly one slot waits for everyone, blocking on the queue's marker (BZPOPMIN) or
sleeping out the rate limit, and a slot that gets work wakes one parked slot, which wakes the next
if it gets work too.

Every job ends `completed` or `failed` on its first fetch, whatever its hash holds: a hash that
cannot be parsed (wire/job.py names the field) is failed through moveToFinished with the values
the scripts would choke on repaired first, never run and never left active.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import redis.exceptions
from pydantic import BaseModel

from twenty_jobs.connection.protocol import CommandConnection, ReplyLostError
from twenty_jobs.errors import HandOffJob, RateLimitError
from twenty_jobs.runtime.blocking import BlockingJobContext
from twenty_jobs.runtime.config import ServedQueue
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.events import Observers, Outcome
from twenty_jobs.runtime.failures import WorkerFailure, failed_reason, stack_entry, stacktrace_json
from twenty_jobs.runtime.hand_off import ConsumerWatch, HandOff
from twenty_jobs.runtime.locks import AbortSignal, ActiveJob, LockRenewer
from twenty_jobs.runtime.own_context import InOwnContext
from twenty_jobs.runtime.retry import plan_retry
from twenty_jobs.runtime.stalled import StalledChecker
from twenty_jobs.runtime.threads import HandlerThreads
from twenty_jobs.wire.job import KEEP_ALL, JobOptions, JobRecord, MalformedJob, keep_jobs, parse_job_hash
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.scripts.errors import ScriptError
from twenty_jobs.wire.scripts.rate_limit import move_job_back_to_wait, set_rate_limit
from twenty_jobs.wire.scripts.schedulers import advance_job_scheduler, is_legacy_repeat_key
from twenty_jobs.wire.scripts.worker import NOTHING, Fetch, FetchedJob, ParentFlags, WorkerScripts, compact_json

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from twenty_jobs.runtime.lifecycle import WorkerContext
    from twenty_jobs.runtime.producer import Producer
    from twenty_jobs.runtime.registry import JobHandler

log = logging.getLogger("twenty_jobs.runtime.worker")
job_log = logging.getLogger("twenty_jobs.job")

# A slot that died of an unexpected error is restarted after this pause (no hot loop).
SLOT_RESTART_DELAY_S = 0.1
# After a fetch failed for another reason than a lost connection, wait this long before the next.
FETCH_RETRY_DELAY_S = 1.0
# Redis caps a BZPOPMIN timeout here (BullMQ: long blocks outlive reconnections badly).
MAX_BLOCK_S = 10.0
MIN_BLOCK_S = 0.001
# A RateLimitError with no limit in force (no ctx.rate_limit before it): wait this long anyway, or
# the job just put back would be fetched again at once, in a loop.
UNLIMITED_RATE_LIMIT_WAIT_MS = 1000
# How deep into `active` to look for the job a failed fetching script left there (it is pushed
# to the head; other workers may have pushed a few more meanwhile).
RECOVERY_SCAN = 100

_CONNECTION_ERRORS = (ReplyLostError, OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _may_have_half_fetched(exc: Exception) -> bool:
    """A finishing call that also fetched raised this: a script error past the finishing part (not
    a negative code from it, not a lost connection), so the fetch may have stopped half-way."""
    return not isinstance(exc, (ScriptError, *_CONNECTION_ERRORS))


class QueueWorker:
    """Serves one queue until closed. Public state: `name`, `handlers`, `concurrency`, `active`
    (job id -> ActiveJob of the jobs running now), `paused`, `closing`."""

    def __init__(
        self,
        served: ServedQueue,
        handlers: dict[str, JobHandler],
        *,
        prefix: str,
        conn: CommandConnection,
        blocking: aioredis.Redis,
        observers: Observers,
        producer: Producer,
        context: WorkerContext,
        consumers: ConsumerWatch | None = None,
    ) -> None:
        self.name = served.name
        self.served = served
        self.handlers = handlers
        self.concurrency = served.concurrency
        self.keys = QueueKeys(prefix, served.name)
        self.scripts = WorkerScripts(self.keys, lock_duration_ms=served.lock_duration_ms, limiter=served.limiter,
                                     max_metrics_points=served.metrics_points)
        self.conn = conn
        self.blocking = blocking
        self.observers = observers
        self.producer = producer
        self.context = context
        self.active: dict[str, ActiveJob] = {}
        self.paused = False
        self.closing = False
        self.force_closing = False
        self._keep_completed = keep_jobs(served.remove_on_complete) if served.remove_on_complete is not None else None
        self._keep_failed = keep_jobs(served.remove_on_fail) if served.remove_on_fail is not None else None
        # With a ConsumerWatch (`--unknown-jobs leave`), jobs with no handler go back to the queue.
        self.hand_off = HandOff(self.name, self.scripts, conn, consumers) if consumers is not None else None
        self._renewer = LockRenewer(self.name, self.scripts, conn, self.active)
        self._stalled = StalledChecker(self.name, self.scripts, conn, observers,
                                       max_stalled_count=served.max_stalled_count,
                                       interval_ms=served.stalled_interval_ms)
        # Blocking (`def`) handlers run here, one thread per slot at most, started on first use.
        self._threads = HandlerThreads(self.name, self.concurrency)
        # A handler's rate_limit(ms): this worker fetches nothing until then (monotonic s; 0: none),
        # even without a limiter of its own, which the scripts need to see the limit.
        self._limited_until = 0.0
        # Run-loop state: the slots, parked slots, the one waiter, and what the last fetch said.
        self._slots: set[asyncio.Task[None]] = set()
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting: asyncio.Future[Any] | None = None
        self._idle = False
        self._next_delayed_at = 0
        self._rate_limited_ms = 0
        self._fractional_timeouts = True
        self._tokens = 0
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._running = False
        self._stopped = asyncio.Event()
        self._warned_legacy: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until closed: a stalled check at once (as Node), then the slots, with lock
        renewal and the periodic stalled check beside them."""
        self._running = True
        background: list[asyncio.Task[None]] = []
        try:
            self._fractional_timeouts = await self._redis_major() >= 6
            # Connect the blocking connection now, busy or not: its name is how Node's getWorkers()
            # and Twenty's health page count this worker.
            await self.blocking.ping()  # type: ignore[misc]
            await self._stalled.check()
            background = [asyncio.ensure_future(self._renewer.run()), asyncio.ensure_future(self._stalled_loop())]
            if self.hand_off is not None:
                background.append(asyncio.ensure_future(self.hand_off.run()))
            while not self.closing:
                if self.paused:
                    await self._resumed.wait()
                    continue
                self._slots = {asyncio.ensure_future(self._slot()) for _ in range(self.concurrency)}
                await asyncio.wait(self._slots)
                for task in self._slots:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("queue %s: a worker slot stopped on an unexpected error; restarting it: %r",
                                  self.name, task.exception())
                        await asyncio.sleep(SLOT_RESTART_DELAY_S)
        finally:
            for task in self._slots:
                task.cancel()
            self._cancel_waiting()
            if self._slots:
                await asyncio.gather(*self._slots, return_exceptions=True)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._threads.close()
            self._running = False
            self._stopped.set()

    async def _stalled_loop(self) -> None:
        while True:
            await asyncio.sleep(self.served.stalled_interval_ms / 1000)
            await self._stalled.check()

    async def close(self) -> None:
        """Stop fetching; return once every running job has finished (and been recorded)."""
        self.closing = True
        self._resumed.set()
        self._wake_all()
        self._cancel_waiting()
        if self._running:
            await self._stopped.wait()

    def force_close(self, reason: str) -> None:
        """Stop now: abort every running job's signal and cancel its handler. Nothing is recorded
        for those jobs: they stay active until the stall checker hands them out again."""
        self.closing = True
        self.force_closing = True
        for job in self.active.values():
            job.signal.abort(reason)
        for task in self._slots:
            task.cancel()
        self._resumed.set()
        self._wake_all()
        self._cancel_waiting()

    async def pause(self) -> None:
        """Stop fetching on this worker (not the queue: other workers go on); running jobs finish."""
        self.paused = True
        self._resumed.clear()
        self._wake_all()
        self._cancel_waiting()
        if self._slots:
            await asyncio.gather(*self._slots, return_exceptions=True)

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    # -- slots -------------------------------------------------------------------------------------

    async def _slot(self) -> None:
        """One concurrency slot: fetch, run, finish-and-fetch-next, until paused or closing."""
        self._tokens += 1
        # The lock token of every job this slot takes (Node: `<worker id>:<n>`).
        token = f"{self.context.worker_id}:{self.name}:{self._tokens}"
        fetched: FetchedJob | None = None
        while True:
            if fetched is None:
                if self.closing or self.paused:
                    return
                fetched = await self._fetch(token)
                continue
            if self._parked:
                self._wake_one()  # work is flowing: let a parked slot look for more
            fetched = await self._run(fetched, token)

    async def _fetch(self, token: str) -> FetchedJob | None:
        """The next job for a slot, or None (re-check pause/close) after waiting or parking."""
        if self._limited_until:
            self._note_manual_limit()
        if self._idle:
            if self._waiting is not None:
                await self._park()  # another slot waits for everyone
                return None
            if not await self._wait():
                return None
            if self._limited_until and time.monotonic() < self._limited_until:
                return None  # woken by a new job while a handler's rate limit lasts: wait it out first
        try:
            fetch = await self.scripts.move_to_active(self.conn, token)
        except Exception as exc:
            return await self._fetch_failed("moveToActive", token, exc)
        return self._take(fetch)

    def _take(self, fetch: Fetch) -> FetchedJob | None:
        """Note what a fetch said about the queue; the job it brought, if any."""
        self._rate_limited_ms = fetch.rate_limited_ms
        if fetch.job is None:
            self._idle = True
            self._next_delayed_at = fetch.next_delayed_at
            return None
        self._idle = False
        return fetch.job

    async def _wait(self) -> bool:
        """As the one waiting slot: sleep out the rate limit, or block on the queue's marker until
        a job is added, the next delayed job is due or drainDelay passes. True: fetch now."""
        if self._rate_limited_ms:
            self._waiting = asyncio.ensure_future(asyncio.sleep(self._rate_limited_ms / 1000))
        else:
            self._waiting = asyncio.ensure_future(self.blocking.bzpopmin(self.keys.marker, self._block_timeout()))
        try:
            woken = await self._waiting
        except asyncio.CancelledError:
            if self.closing or self.paused:
                return False
            raise
        except Exception as exc:  # the blocking client retries connection errors itself
            log.warning("queue %s: waiting for jobs failed: %s", self.name, exc)
            await asyncio.sleep(FETCH_RETRY_DELAY_S)
            return True
        finally:
            self._waiting = None
        if self._rate_limited_ms:
            self._rate_limited_ms = 0
            return True
        # A marker's score is when its job is due (0: now); a future one means: wait until then.
        due_at = int(woken[2]) if woken else 0
        if due_at > time.time() * 1000:
            self._next_delayed_at = due_at
            return False
        self._next_delayed_at = 0
        return True

    def _note_manual_limit(self) -> None:
        """While a handler's rate limit lasts, the slots wait it out like a limit the scripts report."""
        left_ms = math.ceil((self._limited_until - time.monotonic()) * 1000)
        if left_ms > 0:
            self._idle = True
            self._rate_limited_ms = max(self._rate_limited_ms, left_ms)
        else:
            self._limited_until = 0.0

    def _block_timeout(self) -> float:
        timeout = self.served.drain_delay_s
        if self._next_delayed_at:
            due_in_ms = self._next_delayed_at - time.time() * 1000
            if self.hand_off is not None:  # a job left to another consumer: its turn first
                due_in_ms += self.hand_off.wake_margin_ms(self._next_delayed_at)
            timeout = min(max(due_in_ms / 1000, MIN_BLOCK_S), MAX_BLOCK_S)
        if not self._fractional_timeouts:  # Redis < 6 takes whole seconds only
            return float(max(math.ceil(timeout), 1))
        return timeout

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

    def _cancel_waiting(self) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()

    # -- one job -----------------------------------------------------------------------------------

    async def _run(self, fetched: FetchedJob, token: str) -> FetchedJob | None:
        """Run one fetched job, record its outcome; the next job if the finishing call fetched one."""
        started = time.perf_counter()
        try:
            job = parse_job_hash(fetched.id, fetched.fields)
        except MalformedJob as exc:
            return await self._fail_malformed(fetched, token, exc, started)
        if self.hand_off is not None:
            if job.name not in self.handlers and not job.deferred_failure:
                return await self._leave(job, token, None, started)
            self.hand_off.running(token)
        if job.repeat_job_key:
            await self._advance_scheduler(job)
        self.observers.started(self.name, job)
        signal = AbortSignal()
        self.active[job.id] = ActiveJob(token, signal, time.monotonic())
        try:
            try:
                value = await self._call_handler(job, signal)
            except asyncio.CancelledError as error:
                task = asyncio.current_task()
                if self.force_closing or (task is not None and task.cancelling()):
                    raise  # forced stop: the job stays active for the stall checker
                return await self._failed(job, token, error, started)
            except Exception as error:
                if self.force_closing:
                    raise asyncio.CancelledError from error
                if isinstance(error, HandOffJob) and self.hand_off is not None:
                    return await self._leave(job, token, error, started)
                return await self._failed(job, token, error, started)
            if self.force_closing:  # cut short by a forced stop: left active for the stall checker
                raise asyncio.CancelledError
            return await self._completed(job, token, value, started)
        finally:
            self.active.pop(job.id, None)

    async def _call_handler(self, job: JobRecord, signal: AbortSignal) -> Any:
        """The handler's return value (JSON-ready); raises what the handler raised, or a
        WorkerFailure when there is nothing to run."""
        if job.deferred_failure:
            # A stall checker failed this job lazily (BullMQ >= 5.53: `defa`); the fetching worker fails it.
            raise WorkerFailure(job.deferred_failure)
        handler = self.handlers.get(job.name)
        if handler is None:
            served = ", ".join(sorted(self.handlers)) or "none"
            raise WorkerFailure(
                f"no handler for job '{job.name}' on queue '{self.name}' in this twenty-jobs worker "
                f"(it handles: {served}); register one with @twenty_jobs.job(queue='{self.name}', "
                f"name='{job.name}') or stop serving this queue here"
            )
        ctx = JobContext(job, self.name, signal, self.producer, self.context, self, job_log)
        if handler.blocking:
            blocking_ctx = BlockingJobContext(ctx, asyncio.get_running_loop())
            call = self._threads.run(handler.call_blocking, job.data, blocking_ctx)
        else:
            call = handler(job.data, ctx)
        # The handler runs in a context of its own, so context variables it sets (logging or
        # tracing context) do not leak into the slot's next job; the copy is taken after the
        # observers' job_started, so a span they opened is the handler's parent.
        result = await InOwnContext(call, contextvars.copy_context())
        return _json_ready(result)

    async def _completed(self, job: JobRecord, token: str, result: Any, started: float) -> FetchedJob | None:
        try:
            value = compact_json(result)
        except (TypeError, ValueError) as exc:
            return await self._failed(job, token, WorkerFailure(
                f"handler of '{job.name}' returned a value that is not JSON ({exc}); return plain "
                "dicts/lists/str/int/float/bool/None or a pydantic model"), started)
        fetch_next = not (self.closing or self.paused or self._limited_until)
        try:
            fetch = await self.scripts.finish(
                self.conn, job.id, token, target="completed", value=value,
                keep=self._keep(job.opts.remove_on_complete, self._keep_completed),
                attempts=job.opts.attempts, attempts_made=job.attempts_made, parent=_parent_flags(job.opts),
                fetch_next=fetch_next,
            )
        except Exception as exc:
            return await self._not_recorded(job, token, "completed", exc, started)
        job.attempts_made += 1
        job.returnvalue = result
        self.observers.finished(self.name, job, "completed", (time.perf_counter() - started) * 1000, None)
        return self._take(fetch) if fetch_next else None

    async def _failed(self, job: JobRecord, token: str, error: BaseException, started: float) -> FetchedJob | None:
        if isinstance(error, RateLimitError):
            return await self._rate_limited(job, token, error, started)
        plan = await plan_retry(job, error, self.served.backoff_strategies)
        reason = failed_reason(error)
        if plan.note:
            reason = f"{reason} ({plan.note})"
        fields = {"failedReason": reason,
                  "stacktrace": stacktrace_json(job.stacktrace, error, job.opts.stack_trace_limit)}
        fetch_next = not (self.closing or self.paused or self._limited_until)
        fetch = NOTHING
        try:
            if plan.retry and plan.delay_ms > 0:
                fetch = await self.scripts.move_to_delayed(self.conn, job.id, token, delay_ms=plan.delay_ms,
                                                           fields=fields, fetch_next=fetch_next)
            elif plan.retry:
                await self.scripts.retry(self.conn, job.id, token, lifo=job.opts.lifo, fields=fields)
                fetch_next = False  # retryJob fetches nothing; the slot fetches on its own
            else:
                fetch = await self.scripts.finish(
                    self.conn, job.id, token, target="failed", value=reason,
                    keep=self._keep(job.opts.remove_on_fail, self._keep_failed),
                    attempts=job.opts.attempts, attempts_made=job.attempts_made, parent=_parent_flags(job.opts),
                    fetch_next=fetch_next, fields=fields,
                )
        except Exception as exc:
            return await self._not_recorded(job, token, "failed", exc, started)
        job.attempts_made += 1
        job.failed_reason = reason
        outcome: Outcome = "retrying" if plan.retry else "failed"
        self.observers.finished(self.name, job, outcome, (time.perf_counter() - started) * 1000, error)
        return self._take(fetch) if fetch_next else None

    async def _rate_limited(self, job: JobRecord, token: str, error: RateLimitError,
                            started: float) -> FetchedJob | None:
        """The handler raised RateLimitError: the job goes back to wait without using an attempt
        (Node's moveLimitedBackToWait), and this worker waits out what is left of the limit."""
        try:
            left_ms = await move_job_back_to_wait(self.conn, self.keys, job.id, token)
        except Exception as exc:
            return await self._not_recorded(job, token, "moved back to wait", exc, started)
        if not left_ms and time.monotonic() >= self._limited_until:
            log.warning("queue %s: job #%s raised RateLimitError with no rate limit in force; call `await "
                        "ctx.rate_limit(ms)` before raising it. Waiting %d ms.", self.name, job.id,
                        UNLIMITED_RATE_LIMIT_WAIT_MS)
            left_ms = UNLIMITED_RATE_LIMIT_WAIT_MS
        self._limited_until = max(self._limited_until, time.monotonic() + left_ms / 1000)
        self.observers.finished(self.name, job, "rate_limited", (time.perf_counter() - started) * 1000, error)
        return None

    async def _leave(self, job: JobRecord, token: str, handed_off: HandOffJob | None,
                     started: float) -> FetchedJob | None:
        """Give the job back to the queue for its other consumers without using an attempt
        (runtime/hand_off.py). A job with no handler here never reached the observers (it is not
        this worker's); one whose handler handed it off did, and ends as `left`."""
        assert self.hand_off is not None
        try:
            fetch, pause_s = await self.hand_off.leave(job, token, fetch_next=not (self.closing or self.paused))
        except Exception as exc:
            return await self._not_recorded(job, token, "left", exc, started)
        if handed_off is not None:
            self.observers.finished(self.name, job, "left", (time.perf_counter() - started) * 1000, handed_off)
        if pause_s and not self.closing:
            await asyncio.sleep(pause_s)
        return self._take(fetch) if fetch is not None else None

    async def _fail_malformed(self, fetched: FetchedJob, token: str, problem: MalformedJob,
                              started: float) -> FetchedJob | None:
        """Fail a job whose hash cannot be read, with the reason naming the field, without running
        it (WorkerScripts.fail_unreadable makes sure the scripts cannot choke on it)."""
        record = JobRecord(id=problem.job_id, name=problem.name or "", data=None, opts=JobOptions(raw={}))
        self.observers.started(self.name, record)
        reason = str(problem)
        fetch_next = not (self.closing or self.paused)
        try:
            fetch = await self.scripts.fail_unreadable(
                self.conn, fetched, token, reason=reason, stack_entry=stack_entry(WorkerFailure(reason)),
                keep=self._keep_failed or KEEP_ALL, fetch_next=fetch_next,
            )
        except Exception as exc:
            log.error("queue %s: could not fail malformed job #%s (%s): %s", self.name, record.id, reason, exc)
            self.observers.finished(self.name, record, "error", (time.perf_counter() - started) * 1000, exc)
            if fetch_next and _may_have_half_fetched(exc):
                # The failing part ran (it releases the lock first); the part fetching the next
                # job may have stopped half-way with that job under our token. Never this job
                # again: that could loop.
                recovered = await self._recover_half_fetched(token, exc)
                if recovered is not None and recovered.id != fetched.id:
                    return recovered
            return None
        record.attempts_made = 1
        record.failed_reason = reason
        log.warning("queue %s: %s; failed without running it", self.name, reason)
        self.observers.finished(self.name, record, "failed", (time.perf_counter() - started) * 1000, problem)
        return self._take(fetch) if fetch_next else None

    async def _not_recorded(self, job: JobRecord, token: str, what: str, exc: Exception,
                            started: float) -> FetchedJob | None:
        """The finishing call failed: the outcome of this run is not in Redis."""
        if isinstance(exc, ReplyLostError):
            log.warning("queue %s: the reply to job #%s's finishing call was lost with the connection; whether it "
                        "was recorded as %s is unknown, so the job is left to the stall checker", self.name, job.id,
                        what)
        elif isinstance(exc, ScriptError):
            log.warning("queue %s: job #%s ran (%s) but could not be recorded: %s", self.name, job.id, what, exc)
        elif isinstance(exc, _CONNECTION_ERRORS):
            log.warning("queue %s: job #%s ran (%s) but Redis could not be reached to record it (%s); the stall "
                        "checker will hand it out again", self.name, job.id, what, exc)
        else:
            log.error("queue %s: recording job #%s as %s failed: %s", self.name, job.id, what, exc)
        self.observers.finished(self.name, job, "error", (time.perf_counter() - started) * 1000, exc)
        if _may_have_half_fetched(exc):
            # A script error after the job was finished: the part that fetches the next job may
            # have left that one active under our token.
            return await self._recover_half_fetched(token, exc)
        return None

    async def _fetch_failed(self, command: str, token: str, exc: Exception) -> FetchedJob | None:
        if isinstance(exc, ReplyLostError):
            log.warning("queue %s: the reply to %s was lost with the connection; a job it may have taken is left to "
                        "the stall checker", self.name, command)
            return None
        if isinstance(exc, _CONNECTION_ERRORS):
            log.warning("queue %s: %s failed: %s", self.name, command, exc)
            await asyncio.sleep(FETCH_RETRY_DELAY_S)
            return None
        recovered = await self._recover_half_fetched(token, exc)
        if recovered is None:
            log.error("queue %s: %s failed: %s", self.name, command, exc)
            await asyncio.sleep(FETCH_RETRY_DELAY_S)
        return recovered

    async def _recover_half_fetched(self, token: str, exc: Exception) -> FetchedJob | None:
        """A fetching script failed half-way (on a job hash it could not update, such as a
        non-integer `ats`): the job it was taking is in `active` under our token. Find it and hand
        it to the slot, whose parse then fails it with the reason."""
        try:
            found = await self.scripts.find_locked_by(self.conn, token, RECOVERY_SCAN)
        except Exception as lookup_error:
            log.warning("queue %s: could not look for the job a failed script left active: %s", self.name,
                        lookup_error)
            return None
        if found is not None:
            log.warning("queue %s: a BullMQ script failed while taking job #%s (%s); failing the job", self.name,
                        found.id, exc)
        return found

    def _keep(self, own: bool | int | dict[str, int] | None, worker_default: dict[str, int] | None) -> dict[str, int]:
        """keepJobs: the job's own removeOnComplete/removeOnFail, else the worker's, else keep all
        (Node's `getKeepJobs`)."""
        if own is not None:
            return keep_jobs(own)
        return worker_default if worker_default is not None else KEEP_ALL

    async def _advance_scheduler(self, job: JobRecord) -> None:
        """Queue the next iteration of the job scheduler this job is an iteration of, as Node's
        worker does when it fetches one (before running it)."""
        scheduler_id = job.repeat_job_key
        assert scheduler_id is not None
        if is_legacy_repeat_key(scheduler_id):
            if scheduler_id not in self._warned_legacy:
                self._warned_legacy.add(scheduler_id)
                log.error("queue %s: job #%s belongs to a legacy repeatable job (%s), not a job scheduler; its next "
                          "iteration is not scheduled. Re-create it as a job scheduler (`twenty-jobs cron`).",
                          self.name, job.id, scheduler_id)
            return
        try:
            await advance_job_scheduler(self.conn, self.keys, scheduler_id, producer_job_id=job.id, data=job.data,
                                        opts=job.opts.raw)
        except Exception as exc:
            log.error("queue %s: failed to add the next iteration of job scheduler '%s': %s", self.name, scheduler_id,
                      exc)

    async def _redis_major(self) -> int:
        info = await self.conn.call("INFO", "server")
        for line in str(info).splitlines():
            if line.startswith("redis_version:"):
                return int(line.split(":", 1)[1].split(".", 1)[0])
        return 6

    # -- JobActions (what a running job's context calls) ---------------------------------------------

    async def update_progress(self, job: JobRecord, progress: Any) -> None:
        await self.scripts.update_progress(self.conn, job.id, compact_json(progress))
        job.progress = progress
        self.observers.progress(self.name, job, progress)

    async def add_log(self, job: JobRecord, line: str) -> None:
        await self.scripts.add_log(self.conn, job.id, line, job.opts.keep_logs)

    async def update_data(self, job: JobRecord, data: Any) -> None:
        await self.scripts.update_data(self.conn, job.id, compact_json(data))
        job.data = data

    async def rate_limit(self, duration_ms: int) -> None:
        if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
            raise ValueError(f"rate_limit takes a whole number of milliseconds >= 1, got {duration_ms!r}")
        await set_rate_limit(self.conn, self.keys, duration_ms)
        self._limited_until = max(self._limited_until, time.monotonic() + duration_ms / 1000)


def _json_ready(value: Any) -> Any:
    """Return values are stored as JSON (Node reads them): pydantic models are dumped."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _parent_flags(opts: JobOptions) -> ParentFlags:
    if not (opts.fail_parent_on_failure or opts.continue_parent_on_failure or opts.ignore_dependency_on_failure
            or opts.remove_dependency_on_failure):
        return _NO_FLAGS
    return ParentFlags(opts.fail_parent_on_failure, opts.continue_parent_on_failure,
                       opts.ignore_dependency_on_failure, opts.remove_dependency_on_failure)


_NO_FLAGS = ParentFlags()

