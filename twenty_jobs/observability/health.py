"""Health: a heartbeat every worker process writes, and the `check` verdict built on it.

Twenty's own health indicator only asks whether a worker connection exists (peers.md §2: "it
reports whether a worker exists, not whether it is making progress"). Here a queue is healthy
when Redis answers, every queue that should be served has a live consumer, no heartbeat has gone
quiet, and a queue with jobs ready to run has finished a job recently.

Heartbeat: each `twenty-jobs work` process SETs, per served queue, a JSON record under
`heartbeat_key(prefix, queue, worker_id)` every `interval_s` with a TTL of `ttl_s`. The key lives
inside the queue's key space, so any host that sees the queue sees its workers, and a process
that dies leaves nothing behind once the TTL runs out. A record older than three intervals while
its key still exists means the process is alive enough to hold no lock on Redis but its event
loop stopped writing: blocked by CPU-bound handler code, or cut off from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from twenty_jobs.connection.client import make_client
from twenty_jobs.ops.shared_queues import PythonWorkerView, shared_queue_findings
from twenty_jobs.ops.snapshot import (
    COMMANDS_PER_QUEUE,
    DELAYED_SCORE_FACTOR,
    QueueSnapshot,
    attach_worker_counts,
    client_names,
    ping,
    queue_commands,
    read_queues,
    snapshot_from,
)
from twenty_jobs.settings import redacted_url
from twenty_jobs.twenty.queues import KNOWN_QUEUES
from twenty_jobs.wire.keys import heartbeat_key, heartbeat_pattern, job_key, queue_key

if TYPE_CHECKING:
    from twenty_jobs.runtime.worker import TwentyWorker
    from twenty_jobs.wire.job import JobRecord as Job

log = logging.getLogger("twenty_jobs.observability.health")

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

    def job_started(self, queue: str, job: Job) -> None:
        pass

    def job_finished(
        self, queue: str, job: Job, outcome: str, duration_ms: float, error: BaseException | None
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


# -- the `check` verdict -----------------------------------------------------------------------


@dataclass(slots=True)
class Finding:
    """One reason a deployment is (or may be) unhealthy."""

    code: str
    message: str
    queue: str | None = None
    worker_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class QueueHealth:
    queue: str
    served: bool
    snapshot: QueueSnapshot
    python_workers: int
    stale_workers: int
    last_finished_at: int | None = None
    oldest_ready_at: int | None = None

    @property
    def consumers(self) -> int:
        # A Python worker's blocking connection also appears in CLIENT LIST, so the larger count
        # is the number of consumers (CLIENT LIST may be refused: then heartbeats are all we have).
        return max(self.snapshot.workers or 0, self.python_workers)

    def as_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "queue": self.queue,
            "served": self.served,
            "ready": snap.ready,
            "waiting": snap.waiting,
            "prioritized": snap.prioritized,
            "due_delayed": snap.due_delayed,
            "active": snap.active,
            "paused": snap.is_paused,
            "workers": snap.workers,
            "python_workers": self.python_workers,
            "stale_workers": self.stale_workers,
            "last_finished_at": self.last_finished_at,
            "oldest_ready_at": self.oldest_ready_at,
        }


@dataclass(slots=True)
class HealthReport:
    checked_at: int
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    queues: list[QueueHealth] = field(default_factory=list)
    heartbeats: list[HeartbeatRecord] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checked_at": self.checked_at,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
            "queues": [q.as_dict() for q in self.queues],
            "heartbeats": [asdict(h) for h in self.heartbeats],
        }


def unreachable_report(url: str, reason: str) -> HealthReport:
    report = HealthReport(checked_at=now_ms())
    report.problems.append(Finding("redis_unreachable", f"cannot reach Redis at {redacted_url(url)}: {reason}"))
    return report


async def evaluate_health(
    client: aioredis.Redis,
    prefix: str,
    *,
    queues: list[str] | None = None,
    host: str | None = None,
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
    at: int | None = None,
) -> HealthReport:
    """The verdict of `twenty-jobs check`.

    Which queues must have a live worker ("served"): `queues` when given; otherwise the queues of
    the heartbeats written from `host` when given; otherwise every queue with a heartbeat. Every
    Twenty queue is also watched for jobs that nobody consumes.
    """
    at = now_ms() if at is None else at
    report = HealthReport(checked_at=at)
    await ping(client)
    heartbeats = await read_heartbeats(client, prefix)
    if host is not None:
        heartbeats = [h for h in heartbeats if h.host == host]
    report.heartbeats = heartbeats

    if queues:
        served = list(dict.fromkeys(queues))
        watched = served
    else:
        served = list(dict.fromkeys(h.queue for h in heartbeats))
        watched = served if host is not None else list(dict.fromkeys([*served, *KNOWN_QUEUES]))
        if host is not None and not served:
            report.problems.append(Finding(
                "no_live_worker",
                f"no twenty-jobs worker on host '{host}' has written a heartbeat under prefix '{prefix}' "
                f"in the last {HEARTBEAT_TTL_S:.0f} s: is `twenty-jobs work` running here?",
            ))

    snapshots = await read_queues(client, prefix, watched, at)
    names = await client_names(client)
    attach_worker_counts(snapshots, names, prefix)
    if names is None:
        report.warnings.append(Finding(
            "client_list_unavailable",
            "Redis refused CLIENT LIST, so Node workers cannot be counted (Twenty's health page cannot "
            "either); only twenty-jobs heartbeats are used",
        ))

    by_queue: dict[str, list[HeartbeatRecord]] = {}
    for hb in heartbeats:
        by_queue.setdefault(hb.queue, []).append(hb)

    for queue in watched:
        hbs = by_queue.get(queue, [])
        stale = [h for h in hbs if h.is_stale(at)]
        health = QueueHealth(
            queue=queue,
            served=queue in served,
            snapshot=snapshots[queue],
            python_workers=len(hbs) - len(stale),
            stale_workers=len(stale),
        )
        report.queues.append(health)
        for hb in stale:
            report.problems.append(Finding(
                "stale_heartbeat",
                f"{queue}: worker {hb.worker_id} (pid {hb.pid}) last wrote its heartbeat "
                f"{hb.age_ms(at) / 1000:.0f} s ago "
                f"(it writes every {hb.interval_ms / 1000:.0f} s): the process is hung (a blocked event loop?) or "
                "cut off from Redis; restart it",
                queue, hb.worker_id,
            ))

    await _attach_progress(client, prefix, report.queues, by_queue, at)
    for health in report.queues:
        _judge_queue(report, health, by_queue.get(health.queue, []), at, int(stuck_after_s * 1000), names is not None)
    # Queues shared with Twenty's Node worker: jobs left for a consumer nobody runs, and names
    # Node would complete unrun (ops/shared_queues.py).
    live = {q: [PythonWorkerView(frozenset(h.handlers), h.unknown_jobs) for h in hbs if not h.is_stale(at)]
            for q, hbs in by_queue.items() if q in watched}
    for found in await shared_queue_findings(client, prefix, {q: v for q, v in live.items() if v}, names):
        if found.level in ("error", "warn"):
            message = f"{found.message}; {found.fix}" if found.fix else found.message
            (report.problems if found.level == "error" else report.warnings).append(
                Finding(found.code, message, found.queue))
    return report


async def _attach_progress(
    client: aioredis.Redis,
    prefix: str,
    healths: list[QueueHealth],
    by_queue: dict[str, list[HeartbeatRecord]],
    at: int,
) -> None:
    """For queues with consumers and ready jobs: when a job last finished there, and since when
    the oldest ready job has been waiting."""
    candidates = [h for h in healths if h.snapshot.ready and h.consumers and not h.snapshot.is_paused]
    if not candidates:
        return
    pipe = client.pipeline(transaction=False)
    for h in candidates:
        pipe.zrevrange(queue_key(prefix, h.queue, "completed"), 0, 0, withscores=True)
        pipe.zrevrange(queue_key(prefix, h.queue, "failed"), 0, 0, withscores=True)
        pipe.lindex(queue_key(prefix, h.queue, "wait"), -1)  # RPOPLPUSH takes from the right
        pipe.zrange(queue_key(prefix, h.queue, "prioritized"), 0, 0)
        pipe.zrange(queue_key(prefix, h.queue, "delayed"), 0, 0, withscores=True)
    replies = await pipe.execute()
    next_ids: list[tuple[QueueHealth, str]] = []
    for i, h in enumerate(candidates):
        completed, failed, wait_next, prio_next, delayed_next = replies[i * 5 : i * 5 + 5]
        finished = [int(score) for _, score in [*completed, *failed]]
        finished += [hb.last_job_at for hb in by_queue.get(h.queue, []) if hb.last_job_at]
        h.last_finished_at = max(finished) if finished else None
        ready_at = []
        if delayed_next and h.snapshot.due_delayed:
            ready_at.append(int(delayed_next[0][1]) // DELAYED_SCORE_FACTOR)
        h.oldest_ready_at = min(ready_at) if ready_at else None
        for job_id in (wait_next, *(prio_next or [])):
            if job_id:
                next_ids.append((h, str(job_id)))
    if not next_ids:
        return
    pipe = client.pipeline(transaction=False)
    for h, job_id in next_ids:
        pipe.hmget(job_key(prefix, h.queue, job_id), ["timestamp", "delay"])
    for (h, _), (timestamp, delay) in zip(next_ids, await pipe.execute(), strict=True):
        if timestamp is None:
            continue  # finished or removed between the two reads
        ready_at_ms = int(float(timestamp)) + int(float(delay or 0))
        h.oldest_ready_at = ready_at_ms if h.oldest_ready_at is None else min(h.oldest_ready_at, ready_at_ms)


def _judge_queue(
    report: HealthReport,
    health: QueueHealth,
    heartbeats: list[HeartbeatRecord],
    at: int,
    stuck_after_ms: int,
    client_list_ok: bool,
) -> None:
    queue, snap = health.queue, health.snapshot
    ready = _describe_ready(snap)
    if snap.is_paused:
        if snap.ready or snap.paused_jobs:
            report.warnings.append(Finding(
                "queue_paused",
                f"{queue}: the queue is paused with {snap.ready + snap.paused_jobs} job(s) waiting; no worker takes "
                "them until it is resumed (resume it from Node while Node bullmq < 6 shares the queue)",
                queue,
            ))
        return
    if health.consumers == 0:
        if snap.ready:
            report.problems.append(Finding(
                "no_consumer",
                f"{queue}: {ready} and no worker, Node or Python, is connected: they will never run. Start one "
                f"(`twenty-jobs work --queue {queue}`), or take {queue} out of WORKER_EXCLUDED_QUEUES / add it "
                "to WORKER_ENABLED_QUEUES on Twenty's worker",
                queue,
            ))
        elif health.served:
            report.problems.append(Finding(
                "no_live_worker",
                f"{queue}: no live worker (no fresh heartbeat and no worker connection in CLIENT LIST)",
                queue,
            ))
        return
    if client_list_ok and not snap.workers:
        for hb in heartbeats:
            if not hb.is_stale(at) and at - hb.started_at > hb.interval_ms * STALE_AFTER_INTERVALS:
                report.problems.append(Finding(
                    "no_connection",
                    f"{queue}: worker {hb.worker_id} writes heartbeats but has no job-fetching connection open "
                    "to Redis, so it cannot take jobs; check its logs for Redis errors",
                    queue, hb.worker_id,
                ))
    if not snap.ready or health.oldest_ready_at is None:
        return
    waited = at - health.oldest_ready_at
    idle = None if health.last_finished_at is None else at - health.last_finished_at
    if waited > stuck_after_ms and (idle is None or idle > stuck_after_ms):
        since = "no finished job on record" if idle is None else f"the last finished {idle / 1000:.0f} s ago"
        report.problems.append(Finding(
            "no_progress",
            f"{queue}: worker alive but not making progress: {ready}, the oldest for {waited / 1000:.0f} s, "
            f"{health.consumers} worker(s) connected, {since}. Look for a hung handler or a full concurrency "
            "of long jobs in the workers' logs",
            queue,
        ))


def _describe_ready(snap: QueueSnapshot) -> str:
    parts = [f"{n} {what}" for n, what in (
        (snap.waiting, "waiting"), (snap.prioritized, "prioritized"), (snap.due_delayed, "due delayed"),
    ) if n]
    return f"{snap.ready} job(s) ready ({', '.join(parts)})" if parts else "no job ready"


def summary_line(report: HealthReport) -> str:
    """One line for people (and Docker's health log) when everything is fine."""
    served = [q for q in report.queues if q.served or q.consumers]
    workers = sum(q.consumers for q in served)
    python = sum(q.python_workers for q in served)
    return (
        f"healthy: {len(served)} queue(s) with workers ({workers} connection(s), {python} twenty-jobs), "
        f"{sum(q.snapshot.ready for q in report.queues)} job(s) ready"
    )


def problem_lines(findings: Iterable[Finding]) -> list[str]:
    return [f.message for f in findings]
