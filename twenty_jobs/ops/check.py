"""The verdict of `twenty-jobs check`: is every queue being worked? Reads only.

Twenty's own health indicator only asks whether a worker connection exists, not whether it is
making progress (docs/operations.md, "Health"). Here a deployment is healthy when Redis answers,
every queue that should be served has a live consumer, no heartbeat has gone quiet, and a queue
with jobs ready to run has finished a job recently. Heartbeats are the records
`twenty_jobs.observability.heartbeat` writes from every worker process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.observability.heartbeat import (
    DEFAULT_STUCK_AFTER_S,
    HEARTBEAT_TTL_S,
    STALE_AFTER_INTERVALS,
    HeartbeatRecord,
    now_ms,
    read_heartbeats,
)
from twenty_jobs.ops.findings import Finding, Severity, command
from twenty_jobs.ops.rules import describe_ready, nothing_under_prefix, paused_with_jobs, ready_without_consumer
from twenty_jobs.ops.shared_queues import PythonWorkerView, shared_queue_findings
from twenty_jobs.ops.snapshot import attach_worker_counts, client_names, discover_queues, ping
from twenty_jobs.settings import redacted_url
from twenty_jobs.twenty.queues import KNOWN_QUEUES
from twenty_jobs.wire.counts import DELAYED_SCORE_FACTOR, QueueSnapshot, read_queues
from twenty_jobs.wire.job import MalformedJob, parse_job_hash
from twenty_jobs.wire.keys import QueueKeys


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

    def add(self, finding: Finding | None) -> None:
        """File a finding under problems (ERROR) or warnings (anything else); None is nothing."""
        if finding is not None:
            (self.problems if finding.severity is Severity.ERROR else self.warnings).append(finding)

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
    report.add(Finding(Severity.ERROR, "redis_unreachable", f"cannot reach Redis at {redacted_url(url)}: {reason}"))
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
    the heartbeats written from `host` when given; otherwise every queue with a heartbeat. Without
    `queues` and `host`, every Twenty queue and every queue found under the prefix is also watched
    for jobs that nobody consumes.
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
    elif host is not None:
        served = watched = list(dict.fromkeys(h.queue for h in heartbeats))
        if not served:
            report.add(Finding(
                Severity.ERROR, "no_live_worker",
                f"no twenty-jobs worker on host '{host}' has written a heartbeat under prefix '{prefix}' "
                f"in the last {HEARTBEAT_TTL_S:.0f} s: is `twenty-jobs work` running here?",
            ))
    else:
        served = list(dict.fromkeys(h.queue for h in heartbeats))
        found = await discover_queues(client, prefix)
        if not served and not found:
            # An empty answer is most often the wrong Redis or prefix, not a healthy deployment.
            report.add(nothing_under_prefix(prefix))
        watched = list(dict.fromkeys([*served, *KNOWN_QUEUES, *found]))

    snapshots = await read_queues(client, prefix, watched, at)
    names = await client_names(client)
    attach_worker_counts(snapshots, names, prefix)
    if names is None:
        report.add(Finding(
            Severity.WARN, "client_list_unavailable",
            "Redis refused CLIENT LIST, so Node workers cannot be counted (Twenty's health page cannot "
            "either); only twenty-jobs heartbeats are used",
        ))

    by_queue: dict[str, list[HeartbeatRecord]] = {}
    for hb in heartbeats:
        by_queue.setdefault(hb.queue, []).append(hb)

    for queue in watched:
        hbs = by_queue.get(queue, [])
        stale = [h for h in hbs if h.is_stale(at)]
        report.queues.append(QueueHealth(
            queue=queue,
            served=queue in served,
            snapshot=snapshots[queue],
            python_workers=len(hbs) - len(stale),
            stale_workers=len(stale),
        ))
        for hb in stale:
            report.add(Finding(
                Severity.ERROR, "stale_heartbeat",
                f"{queue}: worker {hb.worker_id} (pid {hb.pid}) last wrote its heartbeat "
                f"{hb.age_ms(at) / 1000:.0f} s ago (it writes every {hb.interval_ms / 1000:.0f} s): the process is "
                "hung (a blocked event loop?) or cut off from Redis",
                "restart it",
                queue, hb.worker_id,
            ))

    # Queues shared with Twenty's Node worker: jobs left for a consumer nobody runs, and names Node
    # would complete unrun (ops/shared_queues.py).
    live = {q: [PythonWorkerView(frozenset(h.handlers), h.unknown_jobs) for h in hbs if not h.is_stale(at)]
            for q, hbs in by_queue.items() if q in watched}
    for shared in await shared_queue_findings(client, prefix, {q: v for q, v in live.items() if v}, names):
        if shared.severity in (Severity.ERROR, Severity.WARN):
            report.add(shared)

    await _attach_progress(client, prefix, report.queues, by_queue, at)
    for health in report.queues:
        _judge_queue(
            report, health, by_queue.get(health.queue, []), at, int(stuck_after_s * 1000), names is not None, prefix
        )
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
        keys = QueueKeys(prefix, h.queue)
        pipe.zrevrange(keys.completed, 0, 0, withscores=True)
        pipe.zrevrange(keys.failed, 0, 0, withscores=True)
        pipe.lindex(keys.wait, -1)  # RPOPLPUSH takes from the right
        pipe.zrange(keys.prioritized, 0, 0)
        pipe.zrange(keys.delayed, 0, 0, withscores=True)
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
        pipe.hgetall(QueueKeys(prefix, h.queue).job(job_id))
    for (h, job_id), fields in zip(next_ids, await pipe.execute(), strict=True):
        if not fields:
            continue  # finished or removed between the two reads
        try:
            job = parse_job_hash(job_id, fields)
        except MalformedJob:
            continue  # the worker fails such a job on fetch; it says nothing about waiting time
        ready_at_ms = job.timestamp + job.delay
        h.oldest_ready_at = ready_at_ms if h.oldest_ready_at is None else min(h.oldest_ready_at, ready_at_ms)


def _judge_queue(
    report: HealthReport,
    health: QueueHealth,
    heartbeats: list[HeartbeatRecord],
    at: int,
    stuck_after_ms: int,
    client_list_ok: bool,
    prefix: str,
) -> None:
    queue, snap = health.queue, health.snapshot
    if snap.is_paused:
        report.add(paused_with_jobs(snap, prefix))
        return
    if health.consumers == 0:
        if snap.ready:
            report.add(ready_without_consumer(snap, health.consumers, prefix))
        elif health.served:
            report.add(Finding(
                Severity.ERROR, "no_live_worker",
                f"{queue}: no live worker (no fresh heartbeat and no worker connection in CLIENT LIST)",
                f"start one (`{command('work', '--queue', queue, prefix=prefix)}`)",
                queue,
            ))
        return
    if client_list_ok and not snap.workers:
        for hb in heartbeats:
            if not hb.is_stale(at) and at - hb.started_at > hb.interval_ms * STALE_AFTER_INTERVALS:
                report.add(Finding(
                    Severity.ERROR, "no_connection",
                    f"{queue}: worker {hb.worker_id} writes heartbeats but has no job-fetching connection open "
                    "to Redis, so it cannot take jobs",
                    "check its logs for Redis errors",
                    queue, hb.worker_id,
                ))
    if not snap.ready or health.oldest_ready_at is None:
        return
    waited = at - health.oldest_ready_at
    idle = None if health.last_finished_at is None else at - health.last_finished_at
    if waited > stuck_after_ms and (idle is None or idle > stuck_after_ms):
        since = "no finished job on record" if idle is None else f"the last finished {idle / 1000:.0f} s ago"
        report.add(Finding(
            Severity.ERROR, "no_progress",
            f"{queue}: worker alive but not making progress: {describe_ready(snap)}, the oldest for "
            f"{waited / 1000:.0f} s, {health.consumers} worker(s) connected, {since}",
            "look for a hung handler or a full concurrency of long jobs in the workers' logs",
            queue,
        ))


def summary_line(report: HealthReport) -> str:
    """One line for people (and Docker's health log) when everything is fine."""
    served = [q for q in report.queues if q.served or q.consumers]
    workers = sum(q.consumers for q in served)
    python = sum(q.python_workers for q in served)
    return (
        f"healthy: {len(served)} queue(s) with workers ({workers} connection(s), {python} twenty-jobs), "
        f"{sum(q.snapshot.ready for q in report.queues)} job(s) ready"
    )
