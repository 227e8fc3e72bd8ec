"""Job hashes that are in no list or set of their queue ("orphans"), and where each belongs.

A BullMQ job is a hash `<prefix>:<queue>:<id>` plus its id in exactly one state key: the lists
`wait`, `paused` (Node < 6 only) and `active`, or the sorted sets `prioritized`, `delayed`,
`completed`, `failed` and `waiting-children`. A hash in none of them is never fetched, retried or
cleaned. The known way to make one: a Node bullmq < 6 pauses a queue, a newer BullMQ (Node 6 or
the Python port) adds a job to `wait`, then the Node < 6 resume RENAMEs `paused` over `wait`
(docs/mixed-versions.md). Where a job belongs is read from its hash the way BullMQ writes it
(docs/operations.md, "Orphaned jobs").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twenty_jobs.wire.counts import DELAYED_SCORE_FACTOR
from twenty_jobs.wire.job import JobRecord
from twenty_jobs.wire.keys import OWN_SEGMENT, QueueKeys

# Every single-segment key of a queue that is not a job hash: Node's `QueueKeys.getKeys` names
# (5.x and 6.x), the metrics keys, keys older BullMQ releases used, and our own.
QUEUE_KEY_NAMES = frozenset({
    "wait", "paused", "active", "prioritized", "delayed", "completed", "failed", "waiting-children",
    "stalled", "stalled-check", "limiter", "events", "meta", "marker", "pc", "id", "repeat", "de", "dn",
    "metrics", "priority", "delay", OWN_SEGMENT,
})
# Sub-keys of one job (`<id>:lock`, ...), deleted with it by BullMQ's removeJobKeys.
JOB_SUB_KEYS = ("lock", "logs", "dependencies", "processed", "failed", "unsuccessful")
# BullMQ's priority score: `priority * 0x100000000 + (INCR pc) % 0x100000000` (getPriorityScore).
PRIORITY_SCORE_FACTOR = 0x100000000
# The `marker` members BullMQ writes: "0" (score 0) when a job is ready, "1" (score = the next
# delayed timestamp) for delayed jobs (addBaseMarkerIfNeeded, addDelayMarkerIfNeeded).
READY_MARKER = "0"
DELAYED_MARKER = "1"


def job_id_of(keys: QueueKeys, key: str) -> str | None:
    """The job id whose hash `key` is, or None for the queue's own keys, a job's sub-keys and keys
    of another queue whose name extends this one's (`a:b` beside `a`).

    Job ids hold no colon (Node refuses custom ids with one since 5.58.7), except those a job
    scheduler makes: `repeat:<scheduler id>:<millis>`. Such a key can also be the hash of a
    scheduler whose id looks like `x:123`; `is_scheduler_hash` tells them apart.
    """
    head = keys.job_prefix
    if not key.startswith(head) or len(key) == len(head):
        return None
    suffix = key[len(head):]
    parts = suffix.split(":")
    if len(parts) == 1:
        return None if suffix in QUEUE_KEY_NAMES else suffix
    if parts[0] == "repeat" and len(parts) == 3 and parts[2].isdigit():
        return suffix
    return None


def scheduler_id_of(job_id: str) -> str | None:
    """For a `repeat:<x>:<millis>` candidate, the `x:<millis>` member it would be in `repeat` if
    the key were a scheduler's hash instead of a job's."""
    return job_id.removeprefix("repeat:") if job_id.startswith("repeat:") else None


def state_lists(keys: QueueKeys) -> tuple[str, ...]:
    """The lists a job id can be in."""
    return (keys.wait, keys.paused, keys.active)


def state_sets(keys: QueueKeys) -> tuple[str, ...]:
    """The sorted sets a job id can be in, those holding most jobs first (finished jobs are kept)."""
    return (keys.completed, keys.failed, keys.delayed, keys.prioritized, keys.waiting_children)


def dependencies_key(keys: QueueKeys, job_id: str) -> str:
    """The set of a parent job's unfinished children."""
    return f"{keys.job(job_id)}:dependencies"


@dataclass(frozen=True, slots=True)
class Home:
    """Where an orphaned job goes back to, and why."""

    state: str  # BullMQ's state name: wait, paused, active, prioritized, delayed, completed, failed, waiting-children
    key: str
    reason: str
    # The sorted-set score (None for lists, and for `prioritized`, whose score takes the counter).
    score: int | None = None
    priority: int = 0


def home_of(
    keys: QueueKeys, job: JobRecord, fields: Mapping[str, str], *, paused: bool, locked: bool, pending_children: int
) -> Home:
    """Where BullMQ would keep `job` given its hash `fields`:

    * finished (`finishedOn`): `completed` when it has a `returnvalue` (written only on
      completion), else `failed`, scored by `finishedOn`;
    * its lock is held: `active`, so the worker running it can finish it (moveToFinished fails a
      job that is not in `active`);
    * `delay` > 0: `delayed`, scored by `timestamp + delay` (a worker promotes it when due);
    * unfinished children: `waiting-children`, scored by `timestamp`;
    * a priority: `prioritized`;
    * otherwise `paused` when the queue is paused (every BullMQ resume, Node 5 or 6, moves that
      list to `wait`; a Node 5 resume would overwrite jobs put in `wait`), else `wait`.
    """
    if job.finished_on is not None:
        if "returnvalue" in fields:
            return Home("completed", keys.completed, "finished with a return value", score=job.finished_on)
        return Home("failed", keys.failed, "finished without a return value", score=job.finished_on)
    if locked:
        return Home("active", keys.active, "a worker holds its lock")
    if job.delay > 0:
        due = job.timestamp + job.delay
        return Home("delayed", keys.delayed, f"delay {job.delay} ms", score=due * DELAYED_SCORE_FACTOR)
    if pending_children:
        return Home("waiting-children", keys.waiting_children, f"{pending_children} unfinished child job(s)",
                    score=job.timestamp)
    if job.priority > 0:
        return Home("prioritized", keys.prioritized, f"priority {job.priority}", priority=job.priority)
    if paused:
        return Home("paused", keys.paused, "not finished; the queue is paused")
    return Home("wait", keys.wait, "not finished")


def queue_home(pipe: Any, keys: QueueKeys, job_id: str, home: Home, *, paused: bool, priority_counter: int) -> None:
    """Queue the commands that put `job_id` back in `home` onto a MULTI pipeline, with the marker
    BullMQ's own add scripts write so a blocked worker (Node or Python) wakes up for it.
    `priority_counter` is a fresh `INCR pc` for a `prioritized` home (ignored otherwise)."""
    if home.state in ("wait", "paused", "active"):
        pipe.lpush(home.key, job_id)  # where an add puts a job (workers take from the right)
    elif home.state == "prioritized":
        pipe.zadd(home.key, {job_id: home.priority * PRIORITY_SCORE_FACTOR + priority_counter % PRIORITY_SCORE_FACTOR})
    else:
        assert home.score is not None
        pipe.zadd(home.key, {job_id: home.score})
    if home.state in ("wait", "prioritized") and not paused:
        pipe.zadd(keys.marker, {READY_MARKER: 0})
    elif home.state == "delayed":
        # Only ever move the delayed marker earlier: it tells workers when the next job is due.
        pipe.zadd(keys.marker, {DELAYED_MARKER: home.score // DELAYED_SCORE_FACTOR if home.score else 0}, lt=True)
