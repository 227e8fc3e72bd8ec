"""Exceptions a handler or a caller of twenty-jobs can raise or catch."""

from __future__ import annotations

from bullmq.custom_errors import UnrecoverableError


class TwentyJobsError(Exception):
    """Base class of every error twenty-jobs raises on purpose."""


class ConfigError(TwentyJobsError):
    """Wrong configuration or arguments; the message says what is wrong and how to fix it."""


class RedisUnavailableError(TwentyJobsError):
    """Redis could not be reached."""


class RedisRefusedError(RedisUnavailableError):
    """Redis answered but refused the connection (credentials, TLS certificate): the fix is in the
    settings, not in starting a Redis."""


class PermanentJobError(UnrecoverableError):  # type: ignore[misc]
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
