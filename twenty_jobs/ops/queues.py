"""Queue control for any BullMQ application: stats of every queue under a prefix, and pause,
resume, drain, clean and obliterate through BullMQ's own Lua scripts.

Stats have the shape Node apps build with `queue.getJobCounts()` (`waiting, active, completed,
failed, delayed, paused` plus `prioritized`): each number is the size of that BullMQ state key
(`paused` is the legacy `paused` list that Node bullmq < 6 fills while a queue is paused), and
`is_paused` says whether the queue is paused (docs/operations.md, "Queue stats").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from twenty_jobs.connection.client import make_client
from twenty_jobs.errors import ConfigError, TwentyJobsError
from twenty_jobs.ops.snapshot import discover_queues
from twenty_jobs.twenty.queues import KNOWN_QUEUES
from twenty_jobs.wire.compat import refuse_pause_resume
from twenty_jobs.wire.counts import QueueSnapshot, read_queues
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import ClientRunner
from twenty_jobs.wire.scripts import queue as queue_scripts

if TYPE_CHECKING:
    from twenty_jobs.runtime.worker import TwentyWorker

# Jobs deleted per Lua call by clean and obliterate: each call stays short, progress shows between.
DEFAULT_BATCH = 1000
# States `queue clean` empties when none is named: the finished jobs a queue keeps.
DEFAULT_CLEAN_STATES = ("completed", "failed")
# User-facing state names -> the names BullMQ's clean script takes.
CLEAN_STATE_NAMES = {"waiting": "wait", **{s: s for s in queue_scripts.CLEANABLE_STATES}}
# GET /queues re-discovers the queues under the prefix (a keyspace SCAN) at most this often.
REDISCOVER_S = 30.0

Progress = Callable[[int, int], None]
"""Called after every batch with (done so far, total expected)."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    prioritized: int
    is_paused: bool

    @classmethod
    def from_snapshot(cls, snap: QueueSnapshot) -> QueueStats:
        return cls(snap.name, snap.waiting, snap.active, snap.completed, snap.failed, snap.delayed,
                   snap.paused_jobs, snap.prioritized, snap.is_paused)

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting, "active": self.active, "completed": self.completed, "failed": self.failed,
            "delayed": self.delayed, "paused": self.paused, "prioritized": self.prioritized,
            "is_paused": self.is_paused,
        }


def in_display_order(names: list[str]) -> list[str]:
    """Twenty's queues in Twenty's order first, then the others alphabetically."""
    known = [q for q in KNOWN_QUEUES if q in names]
    return known + sorted(set(names) - set(known))


async def queue_stats(
    client: aioredis.Redis, prefix: str, queues: list[str] | None = None, *, at: int | None = None
) -> list[QueueStats]:
    """Stats of `queues`, or of every queue under `prefix` (one SCAN, then one pipeline)."""
    names = list(dict.fromkeys(queues)) if queues else in_display_order(await discover_queues(client, prefix))
    snapshots = await read_queues(client, prefix, names, int(time.time() * 1000) if at is None else at)
    return [QueueStats.from_snapshot(snapshots[name]) for name in names]


def stats_document(prefix: str, at: int, stats: list[QueueStats]) -> dict[str, Any]:
    """The JSON of `queue stats --json` and `GET /queues`."""
    return {"prefix": prefix, "at": at, "queues": {s.queue: s.as_dict() for s in stats}}


class QueueStatsEndpoint:
    """Serves `GET /queues` from a worker process: a WorkerService that keeps one Redis
    connection and answers `document()` with fresh counts (the queue list is cached)."""

    def __init__(self) -> None:
        self._client: aioredis.Redis | None = None
        self._prefix = ""
        self._names: list[str] = []
        self._discovered_at = float("-inf")
        self._lock = asyncio.Lock()

    async def start(self, worker: TwentyWorker) -> None:
        self._prefix = worker.config.prefix
        self._client = make_client(worker.config.redis_url, what="queue stats")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None

    async def document(self) -> dict[str, Any]:
        if self._client is None:
            raise TwentyJobsError("the queue stats endpoint is not started")
        async with self._lock:  # one scrape at a time on the one connection
            if time.monotonic() - self._discovered_at > REDISCOVER_S:
                self._names = in_display_order(await discover_queues(self._client, self._prefix))
                self._discovered_at = time.monotonic()
            at = int(time.time() * 1000)
            return stats_document(self._prefix, at, await queue_stats(self._client, self._prefix, self._names, at=at)
                                  if self._names else [])


# -- control -----------------------------------------------------------------------------------


async def pause_queue(client: aioredis.Redis, prefix: str, queue: str, *, force: bool = False) -> None:
    """Pause `queue` for every worker, Node and Python. Refused while a Node bullmq < 6 shares it,
    unless `force` (a Node 5 resume would lose jobs added meanwhile: docs/mixed-versions.md)."""
    await refuse_pause_resume(client, prefix, queue, action="pause", force=force)
    await queue_scripts.pause(ClientRunner(client), QueueKeys(prefix, queue))


async def resume_queue(client: aioredis.Redis, prefix: str, queue: str, *, force: bool = False) -> None:
    """Resume `queue` (same guard as `pause_queue`); jobs a Node < 6 parked in the legacy `paused`
    list go back to `wait`, 7000 per script call."""
    await refuse_pause_resume(client, prefix, queue, action="resume", force=force)
    await queue_scripts.resume(ClientRunner(client), QueueKeys(prefix, queue))


async def drain_queue(client: aioredis.Redis, prefix: str, queue: str, *, delayed: bool = False) -> int:
    """Delete the jobs waiting to run (waiting, paused, prioritized; delayed too with `delayed`),
    keeping each job scheduler's next iteration; returns how many went."""
    keys = QueueKeys(prefix, queue)
    before = await _pending(client, prefix, queue, delayed)
    await queue_scripts.drain(ClientRunner(client), keys, delayed=delayed)
    return max(0, before - await _pending(client, prefix, queue, delayed))


async def _pending(client: aioredis.Redis, prefix: str, queue: str, delayed: bool) -> int:
    snap = (await read_queues(client, prefix, [queue], int(time.time() * 1000)))[queue]
    return snap.waiting + snap.paused_jobs + snap.prioritized + (snap.delayed if delayed else 0)


def clean_state(name: str) -> str:
    """A state name for `clean` (`waiting` is BullMQ's `wait`); ConfigError for anything else."""
    state = CLEAN_STATE_NAMES.get(name)
    if state is None:
        raise ConfigError(f"cannot clean '{name}': the state is one of {', '.join(CLEAN_STATE_NAMES)}")
    return state


async def clean_queue(
    client: aioredis.Redis,
    prefix: str,
    queue: str,
    *,
    states: tuple[str, ...] = DEFAULT_CLEAN_STATES,
    older_than_ms: int = 0,
    batch: int = DEFAULT_BATCH,
    now_ms: int,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Delete the jobs of each of `states` older than `older_than_ms` (by when they finished, or
    were added for unfinished states), `batch` per script call; returns the count per state."""
    keys = QueueKeys(prefix, queue)
    chosen = {name: clean_state(name) for name in states}
    snap = (await read_queues(client, prefix, [queue], now_ms))[queue]
    sizes = {"completed": snap.completed, "failed": snap.failed, "delayed": snap.delayed, "wait": snap.waiting,
             "active": snap.active, "paused": snap.paused_jobs, "prioritized": snap.prioritized}
    total = sum(sizes[state] for state in set(chosen.values()))  # at most this many go
    removed: dict[str, int] = {}
    for name, state in chosen.items():
        done = 0
        while True:
            deleted = await queue_scripts.clean_jobs_in_set(ClientRunner(client), keys, state, grace_ms=older_than_ms,
                                                            limit=batch, now_ms=now_ms)
            done += len(deleted)
            if progress is not None:
                progress(sum(removed.values()) + done, total)
            if len(deleted) < batch:
                break
        removed[name] = done
    return removed


async def obliterate_queue(
    client: aioredis.Redis,
    prefix: str,
    queue: str,
    *,
    force: bool = False,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> int:
    """Delete the queue: every job and every key (BullMQ's obliterate: pause, then delete `batch`
    jobs per call). Refused while jobs are active, unless `force`. Returns the jobs deleted."""
    keys = QueueKeys(prefix, queue)
    snap = (await read_queues(client, prefix, [queue], int(time.time() * 1000)))[queue]
    if snap.active and not force:
        raise ConfigError(
            f"queue '{queue}' has {snap.active} active job(s): stop its workers first, or pass --force to "
            "delete them too"
        )
    total = snap.count + snap.active + snap.completed + snap.failed
    # The script only runs on a paused queue (so no worker takes a job while it deletes).
    runner = ClientRunner(client)
    await queue_scripts.pause(runner, keys)
    while True:
        code = await queue_scripts.obliterate_step(runner, keys, count=batch, force=force)
        if code == queue_scripts.OBLITERATE_DONE:
            break
        if code == queue_scripts.OBLITERATE_ACTIVE_JOBS:
            raise TwentyJobsError(
                f"queue '{queue}' got active jobs while being obliterated and is left paused with what remains; "
                "stop its workers and run obliterate again, or pass --force"
            )
        if code == queue_scripts.OBLITERATE_NOT_PAUSED:
            raise TwentyJobsError(f"queue '{queue}' was resumed while being obliterated; run obliterate again")
        if progress is not None:
            remaining = (await read_queues(client, prefix, [queue], int(time.time() * 1000)))[queue]
            left = remaining.count + remaining.active + remaining.completed + remaining.failed
            progress(max(0, total - left), total)
    if progress is not None:
        progress(total, total)
    return total
