"""The heartbeat every `twenty-jobs work` process writes, and the service that writes it.

Each worker process SETs, per served queue, a JSON record (`HeartbeatRecord`) under
`heartbeat_key(prefix, queue, worker_id)` every `interval_s` with a TTL of `ttl_s`. The key lives
inside the queue's key space, so any host that sees the queue sees its workers, and a process
that dies leaves nothing behind once the TTL runs out. A record older than three intervals while
its key still exists means the process is alive enough to hold no lock on Redis but its event
loop stopped writing: blocked by CPU-bound handler code, or cut off from Redis.

`twenty_jobs.ops.check` reads these records for the `check` verdict; the same service keeps the
queue counts the OpenTelemetry gauges and `/healthz` use, so neither touches Redis itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from twenty_jobs.connection.client import make_client
from twenty_jobs.wire.counts import COMMANDS_PER_QUEUE, QueueSnapshot, queue_commands, snapshot_from
from twenty_jobs.wire.keys import heartbeat_key, heartbeat_pattern

if TYPE_CHECKING:
    from twenty_jobs.runtime.worker import TwentyWorker

log = logging.getLogger("twenty_jobs.observability.heartbeat")

HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30.0
# A heartbeat is stale once it is older than this many intervals (one missed write is noise).
STALE_AFTER_INTERVALS = 3
# No job finished on a queue that had jobs ready for this long: "alive but not making progress".
# Generous by default because Twenty's longest jobs (syncs, AI streams) run for minutes.
DEFAULT_STUCK_AFTER_S = 300.0
HEARTBEAT_FORMAT = 1


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the heartbeat record ----------------------------------------------------------------------


@dataclass(slots=True)
class HeartbeatRecord:
    """What one worker process says about one queue it serves."""

    worker_id: str
    queue: str
    host: str
    pid: int
    version: str
    started_at: int
    at: int
    interval_ms: int
    queues: list[str] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    # `--unknown-jobs`: "leave" when jobs with no handler here go to the queue's other consumers.
    unknown_jobs: str = "fail"
    concurrency: int = 1
    active: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    last_job_at: int | None = None
    last_completed_at: int | None = None
    format: int = HEARTBEAT_FORMAT

    def age_ms(self, now: int) -> int:
        return max(0, now - self.at)

    def is_stale(self, now: int) -> bool:
        return self.age_ms(now) > self.interval_ms * STALE_AFTER_INTERVALS

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> HeartbeatRecord | None:
        """The record, or None for anything that is not one of ours (never raises)."""
        try:
            raw = json.loads(text)
            known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (ValueError, TypeError, AttributeError):
            return None


async def read_heartbeats(client: aioredis.Redis, prefix: str) -> list[HeartbeatRecord]:
    """Every heartbeat under `prefix` (one SCAN of the keyspace, then MGET in batches)."""
    keys = [k async for k in client.scan_iter(match=heartbeat_pattern(prefix, "*"), count=1000)]
    records: list[HeartbeatRecord] = []
    for start in range(0, len(keys), 500):
        for value in await client.mget(keys[start : start + 500]):
            if value is not None and (record := HeartbeatRecord.from_json(value)) is not None:
                records.append(record)
    return records


# -- the heartbeat writer (a JobObserver and a WorkerService) -----------------------------------


@dataclass(slots=True)
class _Tally:
    """Per-queue counters, bumped from the job hot path: plain attribute updates, nothing else."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    last_job_at: int | None = None
    last_completed_at: int | None = None
    # When the queue was last seen with jobs ready (None: it had none at the last tick).
    ready_since: int | None = None


@dataclass(slots=True)
class LocalHealth:
    """This process's own view, served on `/healthz`."""

    ok: bool
    problems: list[str]
    queues: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unhealthy", "problems": self.problems, "queues": self.queues}


class Heartbeat:
    """Writes this process's heartbeat per served queue and keeps the queue counts that the
    OpenTelemetry gauges and `/healthz` read, so neither ever touches Redis itself."""

    def __init__(
        self,
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        ttl_s: float = HEARTBEAT_TTL_S,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
    ) -> None:
        if ttl_s <= interval_s * STALE_AFTER_INTERVALS:
            # Otherwise the key would expire before `check` could ever call it stale.
            raise ValueError(
                f"heartbeat TTL ({ttl_s} s) must exceed {STALE_AFTER_INTERVALS} intervals ({interval_s} s)"
            )
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.stuck_after_ms = int(stuck_after_s * 1000)
        self.tallies: dict[str, _Tally] = {}
        self.stats: dict[str, QueueSnapshot] = {}
        self.started_at = now_ms()
        self.last_ok_at: int | None = None
        self.last_error: str | None = None
        self._worker: TwentyWorker | None = None
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = socket.gethostname()
        self.pid = os.getpid()

    # JobObserver: the hot path. No Redis, no allocation beyond the tally on first sight.

    def _tally(self, queue: str) -> _Tally:
        tally = self.tallies.get(queue)
        if tally is None:
            tally = self.tallies[queue] = _Tally()
        return tally

    def job_started(self, queue: str, job: object) -> None:
        pass

    def job_finished(
        self, queue: str, job: object, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None:
        tally = self._tally(queue)
        at = now_ms()
        tally.last_job_at = at
        if outcome == "completed":
            tally.completed += 1
            tally.last_completed_at = at
        elif outcome == "retrying":
            tally.retried += 1
        elif outcome == "left":
            pass  # back on the queue for another consumer (--unknown-jobs leave): neither done nor failed
        else:
            tally.failed += 1

    def job_stalled(self, queue: str, job_id: str) -> None:
        self._tally(queue).stalled += 1

    # WorkerService

    async def start(self, worker: TwentyWorker) -> None:
        self._worker = worker
        self.started_at = now_ms()
        self._client = make_client(worker.config.redis_url, what="heartbeat")
        for qw in worker.workers:
            self._tally(qw.name)
        await self._tick_safely()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None and self._worker is not None:
            # A clean stop removes the heartbeat, so `check` does not report a process that left on
            # purpose as stale; a crash leaves it to expire (and be reported meanwhile).
            prefix, worker_id = self._worker.config.prefix, self._worker.worker_id
            keys = [heartbeat_key(prefix, q.name, worker_id) for q in self._worker.workers]
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                await asyncio.wait_for(self._client.delete(*keys), 2)
            await self._client.aclose()
        self._client = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._tick_safely()

    async def _tick_safely(self) -> None:
        try:
            # A Redis that accepts the connection but never answers must not stall the loop.
            await asyncio.wait_for(self.tick(), self.interval_s)
        except (TimeoutError, RedisError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            if self.last_error is None:
                log.warning("cannot write the worker heartbeat to Redis: %s", message)
            self.last_error = message
        else:
            if self.last_error is not None:
                log.warning("worker heartbeat written again")
            self.last_error = None

    def records(self, at: int) -> list[HeartbeatRecord]:
        assert self._worker is not None
        served = [qw.name for qw in self._worker.workers]
        out = []
        for qw in self._worker.workers:
            tally = self._tally(qw.name)
            out.append(
                HeartbeatRecord(
                    worker_id=self._worker.worker_id,
                    queue=qw.name,
                    host=self.host,
                    pid=self.pid,
                    version=_version(),
                    started_at=self.started_at,
                    at=at,
                    interval_ms=int(self.interval_s * 1000),
                    queues=served,
                    handlers=sorted(qw.handlers),
                    unknown_jobs=str(self._worker.config.unknown_jobs),
                    concurrency=qw.concurrency,
                    active=len(qw.active),
                    completed=tally.completed,
                    failed=tally.failed,
                    retried=tally.retried,
                    stalled=tally.stalled,
                    last_job_at=tally.last_job_at,
                    last_completed_at=tally.last_completed_at,
                )
            )
        return out

    async def tick(self) -> None:
        """Write every heartbeat and read every served queue's counts, in one round trip."""
        assert self._client is not None and self._worker is not None
        prefix = self._worker.config.prefix
        at = now_ms()
        records = self.records(at)
        pipe = self._client.pipeline(transaction=False)
        for record in records:
            pipe.set(heartbeat_key(prefix, record.queue, record.worker_id), record.to_json(), px=int(self.ttl_s * 1000))
        for record in records:
            queue_commands(pipe, prefix, record.queue, at)
        replies = await pipe.execute()
        offset = len(records)
        stats = {}
        for i, record in enumerate(records):
            start = offset + i * COMMANDS_PER_QUEUE
            snap = snapshot_from(record.queue, replies[start : start + COMMANDS_PER_QUEUE])
            stats[record.queue] = snap
            tally = self._tally(record.queue)
            if snap.ready == 0 or snap.is_paused:
                tally.ready_since = None
            elif tally.ready_since is None:
                tally.ready_since = at
        self.stats = stats
        self.last_ok_at = at

    def queue_stats(self) -> dict[str, QueueSnapshot]:
        """The counts read at the last heartbeat (for the OpenTelemetry gauges)."""
        return self.stats

    def local_health(self, at: int | None = None) -> LocalHealth:
        """Healthy when the heartbeat reaches Redis and every served queue with jobs ready has
        finished one recently (what a liveness probe should restart a process for)."""
        at = now_ms() if at is None else at
        problems: list[str] = []
        stale_ms = int(self.interval_s * 1000) * STALE_AFTER_INTERVALS
        if self.last_ok_at is None or at - self.last_ok_at > stale_ms:
            since = "start" if self.last_ok_at is None else f"{(at - self.last_ok_at) / 1000:.0f} s"
            reason = self.last_error or "no answer"
            problems.append(f"cannot reach Redis (no heartbeat written since {since}): {reason}")
        queues: dict[str, dict[str, Any]] = {}
        for queue, tally in self.tallies.items():
            snap = self.stats.get(queue)
            queues[queue] = {
                "completed": tally.completed, "failed": tally.failed, "retried": tally.retried,
                "ready": snap.ready if snap else None, "last_job_at": tally.last_job_at,
            }
            if tally.ready_since is None or at - self.started_at <= self.stuck_after_ms:
                continue
            last = tally.last_job_at or self.started_at
            if at - tally.ready_since > self.stuck_after_ms and at - last > self.stuck_after_ms:
                problems.append(
                    f"{queue}: jobs have been ready for {(at - tally.ready_since) / 1000:.0f} s and this process "
                    f"finished none in {(at - last) / 1000:.0f} s (not making progress)"
                )
        return LocalHealth(not problems, problems, queues)


def _version() -> str:
    from twenty_jobs import __version__

    return __version__
