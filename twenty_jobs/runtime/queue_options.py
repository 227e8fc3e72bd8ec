"""Per-queue options of another Node BullMQ application, declared in the handler module:

    import twenty_jobs
    from twenty_jobs import Backoff, JobDefaults, KeepJobs, Limiter

    twenty_jobs.queue_settings(
        "embeddings",
        concurrency=5,                                    # new Worker(..., {concurrency: 5,
        limiter=Limiter(max=10, duration_ms=1000),        #   limiter: {max: 10, duration: 1000},
        remove_on_complete=KeepJobs(count=100),           #   removeOnComplete: {count: 100}, ...})
        backoff_strategies={"custom": my_backoff},        #   settings: {backoffStrategy}
        job_defaults=JobDefaults(attempts=3, backoff=Backoff("exponential", 1000),
                                 remove_on_complete=KeepJobs(count=100),
                                 remove_on_fail=KeepJobs(count=500)),   # new Queue(..., {defaultJobOptions})
    )

The worker settings (its Worker's options) apply where `twenty-jobs work` serves the queue; the
flags of `work` override them (runtime/config.py says the order). `job_defaults` (its Queue's
`defaultJobOptions`) apply where `Producer` and `twenty-jobs enqueue` add jobs to it
(runtime/job_defaults.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from twenty_jobs.errors import ConfigError
from twenty_jobs.runtime.config import QueueSettings
from twenty_jobs.runtime.job_defaults import JobDefaults, JobRetention, retention_option
from twenty_jobs.runtime.registry import Registry, default_registry
from twenty_jobs.runtime.retry import BUILT_IN_STRATEGIES, BackoffStrategy
from twenty_jobs.wire.scripts.worker import Limiter

T = TypeVar("T")


def queue_settings(
    queue: str,
    *,
    concurrency: int | None = None,
    lock_duration_ms: int | None = None,
    max_stalled_count: int | None = None,
    stalled_interval_ms: int | None = None,
    limiter: Limiter | None = None,
    remove_on_complete: JobRetention | None = None,
    remove_on_fail: JobRetention | None = None,
    backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
    job_defaults: JobDefaults | None = None,
    registry: Registry | None = None,
) -> QueueSettings:
    """Declare how `queue` is served and what its jobs default to (see the module docstring);
    returns the worker settings. Declaring a queue twice with different values is an error."""
    _check_whole("concurrency", concurrency, 1)
    _check_whole("lock_duration_ms", lock_duration_ms, 1)
    _check_whole("max_stalled_count", max_stalled_count, 0)
    _check_whole("stalled_interval_ms", stalled_interval_ms, 1)
    if limiter is not None:
        check_limiter(limiter)
    strategies = dict(backoff_strategies or {})
    for name, strategy in strategies.items():
        if name in BUILT_IN_STRATEGIES:
            raise ConfigError(f"backoff strategy '{name}' is built in; register a custom one under another name")
        if not callable(strategy):
            raise ConfigError(f"backoff strategy '{name}' is not a function (attempt, type, error, job) -> ms")
    settings = QueueSettings(
        concurrency=concurrency,
        lock_duration_ms=lock_duration_ms,
        max_stalled_count=max_stalled_count,
        stalled_interval_ms=stalled_interval_ms,
        remove_on_complete=retention_option(remove_on_complete) if remove_on_complete is not None else None,
        remove_on_fail=retention_option(remove_on_fail) if remove_on_fail is not None else None,
        limiter=limiter,
        backoff_strategies=strategies,
    )
    target = registry or default_registry
    _declare(target.queue_settings, queue, settings, "queue settings")
    if job_defaults is not None:
        _declare(target.job_defaults, queue, job_defaults, "default job options")
    return settings


def check_limiter(limiter: Limiter) -> None:
    """A limiter BullMQ's scripts can use: at least one job per at least one ms."""
    for name, value in (("max", limiter.max), ("duration_ms", limiter.duration_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Limiter {name} must be a whole number >= 1, got {value!r}")


def _check_whole(name: str, value: int | None, least: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        raise ConfigError(f"queue_settings {name} must be a whole number >= {least}, got {value!r}")


def _declare(table: dict[str, T], queue: str, value: T, what: str) -> None:
    existing = table.get(queue)
    if existing is not None and existing != value:
        raise ConfigError(f"{what} for queue '{queue}' are declared twice, differently: declare them once")
    table[queue] = value
