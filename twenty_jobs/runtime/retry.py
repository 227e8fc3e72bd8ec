"""What happens after a failed attempt: retry now, retry after a delay, or fail for good.

The rules are Node bullmq's (`Job.shouldRetryJob` and `Backoffs`, docs/bullmq-wire.md "Retries
and backoff"): a job is retried while `attemptsMade + 1 < attempts`, unless the error is
permanent; the delay comes from the job's `backoff`: `fixed` (the delay), `exponential`
(`round(2^(attempt - 1) * delay)`), both with `jitter` (the delay is drawn uniformly from
`[delay * (1 - jitter), delay]`), or a custom strategy registered under the `backoff.type` name
(QueueSettings.backoff_strategies; Node: the Worker's `settings.backoffStrategy`), which may
return -1 for "do not retry". `RetryJob(delay_ms=N)` from a handler sets the delay itself.

Where Node would leave the job active (an unknown strategy throws inside the worker), the job
fails for good here, with a reason that says which option is wrong.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from twenty_jobs.errors import PermanentJobError, RetryJob
from twenty_jobs.wire.job import JobRecord

BackoffStrategy = Callable[[int, str, BaseException, JobRecord], "int | Awaitable[int]"]
"""`(attempt, backoff type, error, job) -> delay in ms` (-1: do not retry). `attempt` is the number
of the attempt that just failed, from 1, as Node passes `attemptsMade + 1`."""

BUILT_IN_STRATEGIES = ("fixed", "exponential")
# Longest retry delay: further out, a delayed job's score (timestamp * 4096) loses precision in Lua.
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """`retry`: another attempt after `delay_ms` (0: at once). Otherwise the job fails for good;
    `note` then says why a retry that the job asked for is not made (None: attempts used up or
    a permanent error)."""

    retry: bool
    delay_ms: int = 0
    note: str | None = None


FAIL = RetryPlan(False)


async def plan_retry(job: JobRecord, error: BaseException, strategies: Mapping[str, BackoffStrategy]) -> RetryPlan:
    if isinstance(error, PermanentJobError) or job.attempts_made + 1 >= job.opts.attempts:
        return FAIL
    attempt = job.attempts_made + 1
    if isinstance(error, RetryJob) and error.delay_ms is not None:
        return RetryPlan(True, _bounded(error.delay_ms))
    backoff = job.opts.backoff
    if backoff is None:
        return RetryPlan(True, 0)
    if backoff.type == "fixed":
        return RetryPlan(True, _bounded(_jittered(backoff.delay, backoff.jitter)))
    if backoff.type == "exponential":
        # Whole numbers throughout: 2^64 ms is already far past MAX_DELAY_MS.
        longest = 2 ** min(attempt - 1, 64) * backoff.delay
        return RetryPlan(True, _bounded(_jittered(min(longest, MAX_DELAY_MS), backoff.jitter)))
    strategy = strategies.get(backoff.type)
    if strategy is None:
        known = ", ".join([*BUILT_IN_STRATEGIES, *strategies])
        return RetryPlan(False, note=(
            f"not retried: its backoff type '{backoff.type}' (field 'opts.backoff.type') is not a strategy this "
            f"worker knows ({known}); register it in QueueSettings.backoff_strategies"
        ))
    try:
        delay = strategy(attempt, backoff.type, error, job)
        if inspect.isawaitable(delay):
            delay = await delay
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"
        return RetryPlan(False, note=f"not retried: backoff strategy '{backoff.type}' raised {raised}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        return RetryPlan(False, note=f"not retried: backoff strategy '{backoff.type}' returned {delay!r}, not ms")
    if delay == -1:
        return FAIL
    return RetryPlan(True, _bounded(int(delay)))


def _jittered(delay: float, jitter: float) -> float:
    if jitter > 0:
        return math.floor(random.random() * delay * jitter + delay * (1 - jitter))
    return delay


def _bounded(delay: float) -> int:
    return int(min(max(delay, 0), MAX_DELAY_MS))
