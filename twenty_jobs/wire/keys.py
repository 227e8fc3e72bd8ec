"""Redis key names and connection client names, as Node BullMQ spells them.

BullMQ key layout (docs/bullmq-wire.md, "Keys"): `<prefix>:<queue>:<suffix>`. Twenty sets no
prefix, so the prefix is BullMQ's default `bull`. `QueueKeys` names every key of one queue; it is
the only place outside the Lua scripts where a key suffix is spelled.
"""

from __future__ import annotations

import base64

DEFAULT_PREFIX = "bull"

# Node's MetricsTime.ONE_WEEK: one data point a minute for a week (Twenty's worker `metrics` option).
METRICS_ONE_WEEK_POINTS = 10_080

# Our own keys, kept inside the queue's key space so `obliterate` and prefix isolation cover them.
OWN_SEGMENT = "twenty-jobs"
HEARTBEAT_SEGMENT = f"{OWN_SEGMENT}:worker"


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


# The worker name in twenty-jobs' own blocking connections (`<prefix>:<base64(queue)>:w:twenty-jobs`):
# Node's getWorkers() counts them, and a twenty-jobs worker tells them apart from every other
# consumer of the queue (Twenty's Node workers are unnamed: `<prefix>:<base64(queue)>`).
TWENTY_JOBS_WORKER_NAME = "twenty-jobs"


def twenty_jobs_client_name(prefix: str, queue: str) -> str:
    """The CLIENT SETNAME of a twenty-jobs worker's blocking connection (docs/shared-queues.md)."""
    return worker_client_name(prefix, queue, TWENTY_JOBS_WORKER_NAME)


def is_worker_client(name: str, prefix: str, queue: str) -> bool:
    """True for a worker connection of `queue` as Node's `getWorkers()` matches them: the name
    `<prefix>:<base64(queue)>` or that name followed by `:w:<worker name>`."""
    base = worker_client_name(prefix, queue)
    return name == base or name.startswith(base + ":w:")


def is_twenty_jobs_client(name: str, prefix: str, queue: str) -> bool:
    """True for the blocking connection of a twenty-jobs worker of `queue` (any process)."""
    return name == twenty_jobs_client_name(prefix, queue)


def heartbeat_key(prefix: str, queue: str, worker_id: str) -> str:
    return queue_key(prefix, queue, f"{HEARTBEAT_SEGMENT}:{worker_id}")


def heartbeat_pattern(prefix: str, queue: str) -> str:
    """A SCAN MATCH pattern for the heartbeats of `queue` (`*`: of every queue) under `prefix`."""
    queue_part = queue if queue == "*" else glob_escape(queue)
    return queue_key(glob_escape(prefix), queue_part, f"{HEARTBEAT_SEGMENT}:*")


def repair_lock_key(prefix: str, queue: str) -> str:
    """Held by `twenty-jobs repair --apply` while it puts a queue's orphaned jobs back."""
    return queue_key(prefix, queue, f"{OWN_SEGMENT}:repair")


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern (a prefix or queue may contain `*?[]`)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class QueueKeys:
    """Every Redis key of one BullMQ queue, built once (a queue's keys never change).

    The state keys are BullMQ's: `wait`, `paused` and `active` are lists; `prioritized`,
    `delayed`, `completed`, `failed` and `waiting-children` sorted sets; `meta` the queue's
    settings hash (`paused`, `version`, `concurrency`...); `marker` the sorted set a blocked worker
    waits on; `id` the job-id counter; `repeat` the job schedulers' index.
    """

    __slots__ = (
        "active",
        "base",
        "completed",
        "deduplication_prefix",
        "delayed",
        "events",
        "failed",
        "id",
        "job_prefix",
        "limiter",
        "marker",
        "meta",
        "metrics_completed",
        "metrics_failed",
        "paused",
        "pc",
        "prefix",
        "prioritized",
        "queue",
        "repeat",
        "stalled",
        "stalled_check",
        "wait",
        "waiting_children",
    )

    def __init__(self, prefix: str, queue: str) -> None:
        self.prefix = prefix
        self.queue = queue
        self.base = base = f"{prefix}:{queue}"
        self.wait = f"{base}:wait"
        self.paused = f"{base}:paused"
        self.active = f"{base}:active"
        self.prioritized = f"{base}:prioritized"
        self.delayed = f"{base}:delayed"
        self.completed = f"{base}:completed"
        self.failed = f"{base}:failed"
        self.waiting_children = f"{base}:waiting-children"
        self.stalled = f"{base}:stalled"
        self.stalled_check = f"{base}:stalled-check"
        self.limiter = f"{base}:limiter"
        self.events = f"{base}:events"
        self.meta = f"{base}:meta"
        self.marker = f"{base}:marker"
        self.pc = f"{base}:pc"
        self.id = f"{base}:id"
        self.repeat = f"{base}:repeat"
        self.deduplication_prefix = f"{base}:de:"
        self.metrics_completed = f"{base}:metrics:completed"
        self.metrics_failed = f"{base}:metrics:failed"
        # What a job id is appended to for its hash key (the scripts' `ARGV` "key prefix"); read
        # several times per job, so made once.
        self.job_prefix = f"{base}:"

    def job(self, job_id: str) -> str:
        return f"{self.base}:{job_id}"

    def lock(self, job_id: str) -> str:
        return f"{self.base}:{job_id}:lock"

    def logs(self, job_id: str) -> str:
        return f"{self.base}:{job_id}:logs"

    def repeat_entry(self, member: str) -> str:
        """The hash of one job scheduler (or legacy repeatable) listed in `repeat`."""
        return f"{self.base}:repeat:{member}"

    def state(self, state: str) -> str:
        """The list or sorted set of a job state, by BullMQ's state name (`waiting` is `wait`)."""
        return self.wait if state == "waiting" else f"{self.base}:{state}"

    def heartbeat(self, worker_id: str) -> str:
        return heartbeat_key(self.prefix, self.queue, worker_id)

    def heartbeat_pattern(self) -> str:
        return heartbeat_pattern(self.prefix, self.queue)
