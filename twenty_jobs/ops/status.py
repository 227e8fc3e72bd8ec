"""`twenty-jobs status`: per queue, the job counts per state, whether it is paused, and the live
workers (Node and Python), with the findings `check` would make about the same numbers: among
them `nothing_under_prefix`, on which both commands exit 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.observability.heartbeat import HeartbeatRecord, read_heartbeats
from twenty_jobs.ops.findings import Finding
from twenty_jobs.ops.queues import in_display_order
from twenty_jobs.ops.rules import nothing_under_prefix, paused_with_jobs, ready_without_consumer
from twenty_jobs.ops.snapshot import attach_worker_counts, client_names, discover_queues
from twenty_jobs.wire.counts import QueueSnapshot, read_queues


@dataclass(slots=True)
class StatusReport:
    prefix: str
    at: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "at": self.at, "queues": self.rows,
                "findings": [f.as_dict() for f in self.findings]}


async def collect_status(client: aioredis.Redis, prefix: str, queues: list[str] | None, at: int) -> StatusReport:
    """One row per queue (`queues`, or every queue under the prefix and every queue a worker
    serves), and the findings on them: jobs nobody consumes, a paused queue holding jobs, or no
    queue and no worker at all (the same finding as `check`)."""
    heartbeats = await read_heartbeats(client, prefix)
    if queues:
        names = list(dict.fromkeys(queues))
    else:
        names = in_display_order([*await discover_queues(client, prefix), *(hb.queue for hb in heartbeats)])
    snapshots = await read_queues(client, prefix, names, at)
    attach_worker_counts(snapshots, await client_names(client), prefix)
    report = StatusReport(prefix, at)
    fresh = _fresh_workers(heartbeats, at)
    for snap in snapshots.values():
        report.rows.append(_row(snap, fresh.get(snap.name, 0)))
        consumers = max(snap.workers or 0, fresh.get(snap.name, 0))
        for finding in (ready_without_consumer(snap, consumers, prefix), paused_with_jobs(snap, prefix)):
            if finding is not None:
                report.findings.append(finding)
    if not report.rows:
        report.findings.append(nothing_under_prefix(prefix))
    return report


def _fresh_workers(heartbeats: list[HeartbeatRecord], at: int) -> dict[str, int]:
    fresh: dict[str, int] = {}
    for hb in heartbeats:
        if not hb.is_stale(at):
            fresh[hb.queue] = fresh.get(hb.queue, 0) + 1
    return fresh


def _row(snap: QueueSnapshot, python: int) -> dict[str, Any]:
    row = snap.as_dict()
    row["python_workers"] = python
    row["node_workers"] = None if snap.workers is None else max(0, snap.workers - python)
    return row
