"""Exceptions a handler or a caller of twenty-jobs can raise or catch."""

from __future__ import annotations


class TwentyJobsError(Exception):
    """Base class of every error twenty-jobs raises on purpose."""


class ConfigError(TwentyJobsError):
    """Wrong configuration or arguments; the message says what is wrong and how to fix it."""


class RedisUnavailableError(TwentyJobsError):
    """Redis could not be reached."""


class StartupError(TwentyJobsError):
    """A worker could not start (a startup hook failed); the message says which and why."""


class RedisRefusedError(RedisUnavailableError):
    """Redis answered but refused the connection (credentials, TLS certificate): the fix is in the
    settings, not in starting a Redis."""


class PermanentJobError(TwentyJobsError):
    """Fail the job now, with no further attempts (bad data, a 4xx answer, an unknown job name)."""


class RetryJob(TwentyJobsError):
    """Fail this attempt and retry after `delay_ms` (if attempts remain), whatever the job's backoff.

    Used where Twenty sets no backoff but an immediate retry would be pointless (a webhook that
    timed out). With `delay_ms=None` the job's own backoff applies.
    """

    def __init__(self, message: str, *, delay_ms: int | None = None) -> None:
        super().__init__(message)
        self.delay_ms = delay_ms


class HandOffJob(PermanentJobError):
    """This worker cannot run this job as Twenty would (a feature the port cannot decide).

    With `--unknown-jobs leave` the job goes back to its queue for another consumer (Twenty's Node
    worker) without using an attempt, as a job name with no handler does; otherwise it fails with
    this message, which names the feature.
    """


class RateLimitError(TwentyJobsError):
    """Put this job back in wait without using an attempt (Node bullmq's `RateLimitError`).

    Raise it after `await ctx.rate_limit(ms)` (a 429 from an API, say): the job waits with the
    others until the queue's rate limit ends, and runs again then as the same attempt.
    """

    def __init__(self, message: str = "bullmq:rateLimitExceeded") -> None:
        super().__init__(message)
