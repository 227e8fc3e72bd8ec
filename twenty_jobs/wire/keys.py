"""Redis key names and connection client names, as Node BullMQ spells them.

BullMQ key layout (twenty-wire.md §11): `<prefix>:<queue>:<suffix>`. Twenty sets no prefix, so
the prefix is BullMQ's default `bull`.
"""

from __future__ import annotations

import base64

DEFAULT_PREFIX = "bull"

# Job states as BullMQ's getJobCounts names them, in the order people read them.
JOB_STATES: tuple[str, ...] = (
    "waiting", "prioritized", "active", "delayed", "completed", "failed", "paused", "waiting-children",
)
# States in which a job still has to run (what `--burst` waits for, and "jobs nobody consumes").
PENDING_STATES: tuple[str, ...] = ("waiting", "prioritized", "delayed", "active", "paused")

# Node's MetricsTime.ONE_WEEK: one data point a minute for a week (Twenty's worker `metrics` option).
METRICS_ONE_WEEK_POINTS = 10_080

# Our own keys, kept inside the queue's key space so `obliterate` and prefix isolation cover them.
HEARTBEAT_SEGMENT = "twenty-jobs:worker"


def queue_key(prefix: str, queue: str, suffix: str = "") -> str:
    """`<prefix>:<queue>` or `<prefix>:<queue>:<suffix>`."""
    base = f"{prefix}:{queue}"
    return f"{base}:{suffix}" if suffix else base


def job_key(prefix: str, queue: str, job_id: str) -> str:
    return queue_key(prefix, queue, job_id)


def meta_key(prefix: str, queue: str) -> str:
    return queue_key(prefix, queue, "meta")


def queue_of_meta_key(prefix: str, key: str) -> str | None:
    """The queue name in a `<prefix>:<queue>:meta` key (None for any other key)."""
    head, tail = f"{prefix}:", ":meta"
    if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail):
        return key[len(head) : -len(tail)]
    return None


def base64_queue_name(queue: str) -> str:
    return base64.b64encode(queue.encode()).decode()


def worker_client_name(prefix: str, queue: str, worker_name: str | None = None) -> str:
    """The CLIENT SETNAME Node BullMQ gives a worker's blocking connection: `<prefix>:<base64(queue)>`
    (plus `:w:<name>` for named workers). Node's `queue.getWorkers()`, and so Twenty's admin health
    page, counts exactly these names (the Python port writes the plain queue name instead)."""
    name = f"{prefix}:{base64_queue_name(queue)}"
    return f"{name}:w:{worker_name}" if worker_name else name


def heartbeat_key(prefix: str, queue: str, worker_id: str) -> str:
    return queue_key(prefix, queue, f"{HEARTBEAT_SEGMENT}:{worker_id}")


def heartbeat_pattern(prefix: str, queue: str) -> str:
    return queue_key(prefix, queue, f"{HEARTBEAT_SEGMENT}:*")
