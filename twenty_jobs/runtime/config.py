"""What a worker process runs (`WorkerConfig`) and how each queue is served (`QueueSettings`, and
the `ServedQueue` they resolve to).

Per queue, a value comes from the first place that sets it: the queue's `QueueSettings` in the
`WorkerConfig` (the `work` command's per-queue flags, such as `--limit QUEUE=...`), then the
process-wide `WorkerConfig` value (the `work` command's flags), then the `QueueSettings` the
handler modules declared (`twenty_jobs.queue_settings`, runtime/queue_options.py), then Twenty's
table for Twenty's queues (twenty/queues.py), then BullMQ's default.

`QueueSettings` is where the worker options of a Node BullMQ app live (its `new Worker(queue,
processor, {...})`): `removeOnComplete`/`removeOnFail` for jobs that carry none, `limiter {max,
duration}`, and custom backoff strategies, registered under the names its jobs use in
`backoff.type`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from twenty_jobs.runtime.retry import BackoffStrategy
from twenty_jobs.settings import DEFAULT_REDIS_URL
from twenty_jobs.twenty.queues import queue_config
from twenty_jobs.wire.keys import DEFAULT_PREFIX, METRICS_ONE_WEEK_POINTS
from twenty_jobs.wire.scripts.worker import Limiter

if TYPE_CHECKING:
    from twenty_jobs.runtime.events import JobObserver
    from twenty_jobs.runtime.lifecycle import LifecycleHook
    from twenty_jobs.runtime.worker import WorkerService

__all__ = ["Limiter", "QueueSettings", "Retention", "ServedQueue", "WorkerConfig", "serve"]

# BullMQ's defaults, which Twenty does not change.
DEFAULT_STALLED_INTERVAL_MS = 30_000
# How long the idle BZPOPMIN blocks before re-arming (BullMQ's drainDelay, seconds).
DEFAULT_DRAIN_DELAY_S = 5.0

# removeOnComplete / removeOnFail: True (remove at once), False (keep), a count to keep, or
# `{"age": seconds, "count": n, "limit": n}`.
Retention = bool | int | dict[str, int]


class UnknownJobs(StrEnum):
    """What a worker does with a job it has no handler for (runtime/hand_off.py)."""

    FAIL = "fail"  # fail it, naming the job (Twenty's Node worker would complete it silently)
    LEAVE = "leave"  # give it back to the queue for another consumer, without using an attempt


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Worker options for one queue; None leaves the value to the process or Twenty's table."""

    concurrency: int | None = None
    lock_duration_ms: int | None = None
    max_stalled_count: int | None = None
    stalled_interval_ms: int | None = None
    # Applied to jobs whose own options do not say (Node: the Worker's removeOnComplete/removeOnFail).
    remove_on_complete: Retention | None = None
    remove_on_fail: Retention | None = None
    limiter: Limiter | None = None
    # `backoff.type` name -> strategy (Node: the Worker's `settings.backoffStrategy`).
    backoff_strategies: Mapping[str, BackoffStrategy] = field(default_factory=dict)


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
    # Every served queue's rate limiter (`work --limit MAX/DURATION_MS`).
    limiter: Limiter | None = None
    drain_delay_s: float = DEFAULT_DRAIN_DELAY_S
    allow_custom_queues: bool = True
    # `leave`: share the queues with another consumer (Twenty's Node worker), which runs the jobs
    # this process has no handler for, and those a handler hands off (HandOffJob).
    unknown_jobs: UnknownJobs = UnknownJobs.FAIL
    install_signal_handlers: bool = True
    observers: list[JobObserver] = field(default_factory=list)
    services: list[WorkerService] = field(default_factory=list)
    queue_settings: dict[str, QueueSettings] = field(default_factory=dict)
    # Run with the WorkerContext before the first job / after the last one (besides the registry's).
    on_startup: list[LifecycleHook] = field(default_factory=list)
    on_shutdown: list[LifecycleHook] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServedQueue:
    """The settings one queue is served with, resolved."""

    name: str
    concurrency: int
    lock_duration_ms: int
    max_stalled_count: int
    stalled_interval_ms: int
    drain_delay_s: float
    remove_on_complete: Retention | None
    remove_on_fail: Retention | None
    limiter: Limiter | None
    backoff_strategies: Mapping[str, BackoffStrategy]
    # Twenty's workers keep BullMQ's per-minute metrics for a week; its admin charts read them.
    metrics_points: int = METRICS_ONE_WEEK_POINTS


def serve(config: WorkerConfig, name: str, declared: QueueSettings | None = None) -> ServedQueue:
    """Resolve how `name` is served, `declared` being what the handler modules declared for it
    (raises ConfigError for an unknown name when custom queues are not allowed)."""
    table = queue_config(name, allow_custom=config.allow_custom_queues)
    own = config.queue_settings.get(name, QueueSettings())
    code = declared or QueueSettings()

    def first(*values: int | None) -> int:
        return next(v for v in values if v is not None)

    return ServedQueue(
        name=name,
        concurrency=first(own.concurrency, config.concurrency, code.concurrency, table.concurrency),
        lock_duration_ms=first(own.lock_duration_ms, config.lock_duration_ms, code.lock_duration_ms,
                               table.lock_duration_ms),
        max_stalled_count=first(own.max_stalled_count, config.max_stalled_count, code.max_stalled_count,
                                table.max_stalled_count),
        stalled_interval_ms=first(own.stalled_interval_ms, config.stalled_interval_ms, code.stalled_interval_ms,
                                  DEFAULT_STALLED_INTERVAL_MS),
        drain_delay_s=config.drain_delay_s,
        remove_on_complete=own.remove_on_complete if own.remove_on_complete is not None else code.remove_on_complete,
        remove_on_fail=own.remove_on_fail if own.remove_on_fail is not None else code.remove_on_fail,
        limiter=own.limiter or config.limiter or code.limiter,
        backoff_strategies={**code.backoff_strategies, **own.backoff_strategies},
    )
