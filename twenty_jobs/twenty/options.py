"""Twenty's job options -> BullMQ job options, exactly as Twenty's `BullMQDriver` builds them.

Source: the newest BullMQDriver and its spec (docs/twenty-queues.md, "What `add` writes"). Every `add` gets a
priority (the queue's by default), so Twenty's ordinary jobs live in BullMQ's `prioritized` set.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from twenty_jobs.twenty.queues import DEFAULT_PRIORITY, KNOWN_QUEUES

# QUEUE_RETENTION (constants/queue-retention.constants.ts @ 41d24255).
COMPLETED_MAX_AGE_S = 14_400  # 4 hours
COMPLETED_MAX_COUNT = 1_000
FAILED_MAX_AGE_S = 604_800  # 7 days
FAILED_MAX_COUNT = 1_000

REMOVE_ON_COMPLETE: dict[str, int] = {"age": COMPLETED_MAX_AGE_S, "count": COMPLETED_MAX_COUNT}
REMOVE_ON_FAIL: dict[str, int] = {"age": FAILED_MAX_AGE_S, "count": FAILED_MAX_COUNT}

# `${id}-${uuidv4()}` (and `-<index>` after it for bulk adds): current Twenty strips only a suffix of
# this shape, case-insensitively; an id without one is its own prefix (get-queue-job-id-prefix.util.ts,
# docs/twenty-queues.md). Twenty around 1.14 cut the last 37 characters, whatever they were.
_UUID_SUFFIX = re.compile(
    r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:-\d+)?$", re.IGNORECASE
)

# BullMQ's largest priority (2^21).
MAX_PRIORITY = 2_097_152

BackoffStrategy = Literal["fixed", "exponential"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Twenty's `backoff` job option: `{strategy, initialDelayMilliseconds, jitter?}`."""

    strategy: BackoffStrategy
    initial_delay_ms: int
    jitter: float | None = None

    def to_bullmq(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.strategy, "delay": self.initial_delay_ms}
        if self.jitter is not None:
            out["jitter"] = self.jitter
        return out


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Twenty's `QueueJobOptions`: what `MessageQueueService.add(name, data, options)` accepts."""

    id: str | None = None
    priority: int | None = None
    retry_limit: int = 0
    delay: int | None = None
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if self.retry_limit < 0:
            raise ValueError(f"retry_limit must be >= 0, got {self.retry_limit}")
        if self.priority is not None and not 0 <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be between 0 and {MAX_PRIORITY}, got {self.priority}")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"delay must be >= 0 ms, got {self.delay}")


def default_priority(queue: str) -> int:
    """The queue's priority from Twenty's table; BullMQ's 0 (plain wait list) for other queues."""
    cfg = KNOWN_QUEUES.get(queue)
    return cfg.priority if cfg is not None else DEFAULT_PRIORITY


def job_id_with_suffix(job_id: str) -> str:
    """Twenty makes every caller id unique: `<id>-<uuid4>`."""
    return f"{job_id}-{uuid.uuid4()}"


def bullmq_job_opts(queue: str, options: JobOptions, *, job_id: str | None = None) -> dict[str, Any]:
    """The BullMQ `JobsOptions` Twenty's driver passes to `queue.add` for these options.

    `job_id` overrides the generated `<id>-<uuid>` (bulk items carry their ids verbatim).
    """
    opts: dict[str, Any] = {}
    if job_id is not None:
        opts["jobId"] = job_id
    elif options.id:
        opts["jobId"] = job_id_with_suffix(options.id)
    opts["priority"] = options.priority if options.priority is not None else default_priority(queue)
    opts["attempts"] = 1 + (options.retry_limit or 0)
    if options.backoff is not None:
        opts["backoff"] = options.backoff.to_bullmq()
    opts["removeOnComplete"] = dict(REMOVE_ON_COMPLETE)
    opts["removeOnFail"] = dict(REMOVE_ON_FAIL)
    if options.delay is not None:
        opts["delay"] = options.delay
    return opts


def cron_template_opts(priority: int | None = None) -> dict[str, Any]:
    """Options of a job scheduler's template (driver `addCron`): retention, and a priority only
    when the caller gave one (Twenty's crons set none, so their iterations go to `wait`)."""
    opts: dict[str, Any] = {
        "removeOnComplete": dict(REMOVE_ON_COMPLETE),
        "removeOnFail": dict(REMOVE_ON_FAIL),
    }
    if priority is not None:
        opts["priority"] = priority
    return opts


def cron_scheduler_id(job_name: str, job_id: str | None = None) -> str:
    """`getJobKey({jobName, jobId})` (utils/get-job-key.util.ts @ 41d24255)."""
    return f"{job_name}.{job_id}" if job_id else job_name


def queue_job_id_prefix(job_id: str) -> str:
    """A stored job id minus Twenty's `-<uuid>` or `-<uuid>-<index>` suffix; an id without such a
    suffix is kept whole (get-queue-job-id-prefix.util.ts)."""
    return _UUID_SUFFIX.sub("", job_id, count=1)


def is_already_waiting(waiting_job_ids: Iterable[str], job_id: str) -> bool:
    """Twenty's dedupe rule (is-queue-job-id-already-waiting.util.ts): a waiting or prioritized job
    whose id equals `job_id`, or whose id minus the UUID suffix equals it."""
    return any(existing == job_id or queue_job_id_prefix(existing) == job_id for existing in waiting_job_ids)


# The states Twenty's dedupe reads (newest driver: waiting + prioritized).
DEDUPE_STATES: tuple[str, ...] = ("waiting", "prioritized")
