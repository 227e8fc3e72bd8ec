"""`twenty-jobs doctor`: what is wrong or risky in this Redis, and what to do about each.

Every check reads; nothing is changed. Findings (twenty_jobs/ops/findings.py) carry a severity
and, for anything above info, the fix in one sentence. The checks come from what breaks Twenty
installs and from mixing the Python port with Twenty's Node bullmq (docs/operations.md,
docs/mixed-versions.md).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from twenty_jobs.observability.heartbeat import HeartbeatRecord, read_heartbeats
from twenty_jobs.ops import rules
from twenty_jobs.ops.findings import Finding, Severity, command
from twenty_jobs.ops.orphans import find_orphans
from twenty_jobs.ops.shared_queues import PythonWorkerView, pending_names, shared_queue_findings
from twenty_jobs.ops.snapshot import attach_worker_counts, client_names
from twenty_jobs.runtime.config import UnknownJobs
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.twenty.jobs import known_job_names
from twenty_jobs.twenty.queues import DESCRIBES, KNOWN_QUEUES, TWENTY_QUEUES
from twenty_jobs.wire.compat import NodeVersion, find_legacy_repeatables
from twenty_jobs.wire.counts import QueueSnapshot, read_queues
from twenty_jobs.wire.job import MalformedJob, parse_job_hash
from twenty_jobs.wire.keys import QueueKeys

# BullMQ's RedisConnection: minimum_version / recommended_minimum_version.
REDIS_MINIMUM = (5, 0, 0)
REDIS_RECOMMENDED = (6, 2, 0)
# How many pending job ids per state are read to find job names without a handler.
NAME_SAMPLE = 500
# Finished-job hashes sampled per queue and state for MEMORY USAGE.
MEMORY_SAMPLE = 50
FINISHED_MEMORY_WARN_BYTES = 100 * 1024 * 1024
# Keys of the queues' key space examined for orphaned jobs (a SCAN in batches), and orphan ids shown.
ORPHAN_SCAN_MAX_KEYS = 200_000
ORPHAN_SAMPLE = 5


@dataclass(slots=True)
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    redis: dict[str, Any] = field(default_factory=dict)
    queues: list[str] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARN)

    def as_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "redis": self.redis,
            "queues": self.queues,
            "findings": [f.as_dict() for f in self.findings],
        }


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    numbers = re.findall(r"\d+", text.split("-")[0])
    return tuple(int(n) for n in numbers[:3]) if numbers else None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


async def run_doctor(
    client: aioredis.Redis,
    prefix: str,
    queues: list[str],
    *,
    registry: Registry | None = None,
    at: int,
    orphan_scan_max_keys: int = ORPHAN_SCAN_MAX_KEYS,
) -> DoctorReport:
    """All checks over `queues` (the caller picks them: given, known and discovered)."""
    report = DoctorReport(queues=list(queues))
    await _check_redis(client, report)
    snapshots = await read_queues(client, prefix, queues, at)
    names = await client_names(client)
    attach_worker_counts(snapshots, names, prefix)
    heartbeats = [h for h in await read_heartbeats(client, prefix) if not h.is_stale(at)]
    python: dict[str, list[HeartbeatRecord]] = {}
    for hb in heartbeats:
        python.setdefault(hb.queue, []).append(hb)

    _check_node_versions(report, snapshots, python)
    await _check_legacy_repeatables(client, prefix, queues, report, python)
    _check_consumers(report, snapshots, python, prefix)
    await _check_orphans(client, prefix, queues, report, orphan_scan_max_keys)
    await _check_unserved_names(client, prefix, report, snapshots, python, registry)
    await _check_unknown_names(client, prefix, report, snapshots, python, registry)
    views = {q: [PythonWorkerView(frozenset(h.handlers), h.unknown_jobs) for h in hbs]
             for q, hbs in python.items() if q in snapshots}
    for found in await shared_queue_findings(client, prefix, views, names):
        report.add(found)
    await _check_finished_memory(client, prefix, report, snapshots)
    return report


async def _check_redis(client: aioredis.Redis, report: DoctorReport) -> None:
    try:
        info = await client.info()
    except ResponseError as exc:  # INFO refused by an ACL or a managed Redis
        report.add(Finding(Severity.WARN, "redis_info", f"cannot read Redis INFO ({exc})",
                           "check by hand that the queue Redis runs with maxmemory-policy noeviction"))
        return
    version = str(info.get("redis_version", "?"))
    policy = info.get("maxmemory_policy")
    maxmemory = int(info.get("maxmemory") or 0)
    used = int(info.get("used_memory") or 0)
    report.redis = {"version": version, "maxmemory_policy": policy, "maxmemory": maxmemory, "used_memory": used}
    vt = version_tuple(version) or (0,)
    if vt < REDIS_MINIMUM:
        report.add(Finding(Severity.ERROR, "redis_version", f"Redis {version} is older than BullMQ's minimum 5.0.0",
                           "upgrade Redis (6.2 or newer; 7.x is best)"))
    elif vt < REDIS_RECOMMENDED:
        report.add(Finding(Severity.WARN, "redis_version", f"Redis {version} is older than the 6.2.0 BullMQ recommends",
                           "upgrade Redis to 6.2 or newer"))
    else:
        report.add(Finding(Severity.OK, "redis_version", f"Redis {version}"))
    if policy is None:
        report.add(Finding(Severity.WARN, "maxmemory_policy", "cannot read maxmemory-policy (INFO memory hides it)",
                           "make sure the queue Redis runs with maxmemory-policy noeviction"))
    elif policy != "noeviction":
        report.add(Finding(
            Severity.ERROR, "maxmemory_policy",
            f"maxmemory-policy is '{policy}': under memory pressure Redis may evict job hashes, locks "
            "and queue lists, and jobs vanish without an error",
            "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)",
        ))
    else:
        report.add(Finding(Severity.OK, "maxmemory_policy", "maxmemory-policy is noeviction"))
    if maxmemory and used > 0.8 * maxmemory:
        report.add(Finding(
            Severity.WARN, "redis_memory",
            f"Redis uses {_fmt_bytes(used)} of its {_fmt_bytes(maxmemory)} maxmemory ({100 * used / maxmemory:.0f}%); "
            "at the limit every write fails (noeviction) and queues stop",
            "raise maxmemory or free memory (see the finished-jobs finding below)",
        ))


def _check_node_versions(
    report: DoctorReport, snapshots: dict[str, QueueSnapshot], python: dict[str, list[HeartbeatRecord]]
) -> None:
    by_version: dict[str, list[str]] = {}
    for snap in snapshots.values():
        if snap.node_version:
            by_version.setdefault(snap.node_version, []).append(snap.name)
    if not by_version:
        report.add(Finding(Severity.INFO, "node_version",
                           "no Node bullmq has opened these queues (no `version` in their meta hash)"))
        return
    for version, queues in sorted(by_version.items()):
        node = NodeVersion.parse(version) or NodeVersion(0, 0, 0)
        report.add(rules.node_below_6(node, queues, [q for q in queues if q in python]))


async def _check_legacy_repeatables(
    client: aioredis.Redis, prefix: str, queues: list[str], report: DoctorReport,
    python: dict[str, list[HeartbeatRecord]],
) -> None:
    found = [entry for queue in queues for entry in await find_legacy_repeatables(client, prefix, queue)]
    if not found:
        report.add(Finding(Severity.OK, "legacy_repeatable",
                           "no legacy repeatable jobs (every cron is a job scheduler)"))
    for entry in found:
        report.add(rules.legacy_repeatable(entry, entry.queue in python, prefix))


def _check_consumers(
    report: DoctorReport, snapshots: dict[str, QueueSnapshot], python: dict[str, list[HeartbeatRecord]],
    prefix: str,
) -> None:
    silent = True
    for snap in snapshots.values():
        consumers = max(snap.workers or 0, len(python.get(snap.name, [])))
        for finding in (rules.paused_with_jobs(snap, prefix), rules.ready_without_consumer(snap, consumers, prefix)):
            if finding is not None:
                silent = False
                report.add(finding)
    if silent:
        report.add(Finding(Severity.OK, "consumers", "every queue with jobs ready has a worker"))


async def _check_unknown_names(
    client: aioredis.Redis, prefix: str, report: DoctorReport, snapshots: dict[str, QueueSnapshot],
    python: dict[str, list[HeartbeatRecord]], registry: Registry | None,
) -> None:
    """Queue and job names twenty-jobs does not know: a queue that is not Twenty's (a typo, another
    BullMQ app, or a Twenty newer than its table, docs/twenty-queues.md), a Twenty queue whose
    worker config is Twenty's common entry rather than read from Twenty, and pending jobs on Twenty
    queues whose names are neither Twenty's known jobs nor handled by a Python worker."""
    handled: dict[str, set[str]] = {q: {n for hb in hbs for n in hb.handlers} for q, hbs in python.items()}
    if registry is not None:
        for queue in registry.queues():
            handled.setdefault(queue, set()).update(registry.names(queue))
    for queue, snap in snapshots.items():
        cfg = KNOWN_QUEUES.get(queue)
        if cfg is None:
            if snap.count or snap.completed or snap.failed:
                served = "served by a Python worker" if queue in handled else "not served by a Python worker here"
                report.add(Finding(
                    Severity.INFO, "unknown_queue",
                    f"{queue}: not one of Twenty's queues ({len(TWENTY_QUEUES)} in the table, {DESCRIBES}); "
                    f"{served}",
                    "nothing to do for another BullMQ application's queue; for a typo, fix the producer", queue,
                ))
            continue
        if not cfg.config_verified and snap.count:
            report.add(Finding(
                Severity.INFO, "unverified_queue_config",
                f"{queue}: Twenty's worker config for this queue could not be read; twenty-jobs uses Twenty's "
                f"common entry (concurrency {cfg.concurrency}, lock {cfg.lock_duration_ms} ms, priority "
                f"{cfg.priority})", "set --concurrency/--lock-duration-ms if your Twenty differs", queue,
            ))
        names = await pending_names(client, prefix, queue)
        unknown = sorted(n for n in names if n not in known_job_names(queue) and n not in handled.get(queue, set()))
        if unknown:
            report.add(Finding(
                Severity.INFO, "unknown_job_names",
                f"{queue}: pending jobs with names twenty-jobs does not know (not a Twenty job it knows of, no "
                f"Python handler): {', '.join(f'{n} ({names[n]})' for n in unknown[:10])}",
                "Twenty's Node worker runs them if it knows them; otherwise check the producer", queue,
            ))


async def _check_orphans(
    client: aioredis.Redis, prefix: str, queues: list[str], report: DoctorReport, max_keys: int
) -> None:
    scan = await find_orphans(client, prefix, queues, max_keys=max_keys, sample=ORPHAN_SAMPLE * max(1, len(queues)))
    examined = f"{scan.progress.keys_examined} key(s) examined"
    if not scan.progress.complete:
        report.add(Finding(
            Severity.INFO, "orphaned_jobs",
            f"the search for orphaned jobs stopped after {examined} (the queues hold more)",
            f"`{command('repair', prefix=prefix)}` searches every key",
        ))
    for queue, count in scan.by_queue.items():
        sample = [o for o in scan.sample if o.queue == queue][:ORPHAN_SAMPLE]
        shown = ", ".join(f"{o.job_id} ({o.name or '?'})" for o in sample) + (" ..." if count > len(sample) else "")
        report.add(Finding(
            Severity.ERROR, "orphaned_jobs",
            f"{queue}: {count} job(s) are in no list or set of the queue, so no worker will ever run them: {shown} "
            "(e.g. added while a Node bullmq < 6 had the queue paused, then lost by its resume)",
            f"`{command('repair', '--queue', queue, prefix=prefix)}` shows where each goes; add --apply to "
            "put them back",
            queue,
        ))
    if not scan.count:
        report.add(Finding(Severity.OK, "orphaned_jobs", f"no orphaned jobs ({examined})"))


async def _check_unserved_names(
    client: aioredis.Redis, prefix: str, report: DoctorReport, snapshots: dict[str, QueueSnapshot],
    python: dict[str, list[HeartbeatRecord]], registry: Registry | None,
) -> None:
    # For each queue Python serves, the handlers EVERY Python consumer has: a name missing from
    # any one of them is a job that worker fails with "no handler" when it happens to fetch it.
    served: dict[str, set[str]] = {}
    for queue, hbs in python.items():
        for hb in hbs:
            if hb.unknown_jobs == UnknownJobs.LEAVE:
                continue  # it leaves the names it lacks to other consumers (shared_queue_findings)
            served[queue] = set(hb.handlers) if queue not in served else served[queue] & set(hb.handlers)
    if registry is not None:
        for queue in registry.queues():
            names = set(registry.names(queue))
            served[queue] = names if queue not in served else served[queue] & names
    served = {q: h for q, h in served.items() if q in snapshots}
    if not served:
        report.add(Finding(Severity.INFO, "unhandled_jobs",
                           "no Python worker serves these queues (no heartbeat; pass --import to check the "
                           "handlers a worker would load)"))
        return
    pipe = client.pipeline(transaction=False)
    order = list(served)
    for queue in order:
        keys = QueueKeys(prefix, queue)
        pipe.lrange(keys.wait, 0, NAME_SAMPLE - 1)
        pipe.zrange(keys.prioritized, 0, NAME_SAMPLE - 1)
        pipe.zrange(keys.delayed, 0, NAME_SAMPLE - 1)
        pipe.lrange(keys.paused, 0, NAME_SAMPLE - 1)
    replies = await pipe.execute()
    ids: list[tuple[str, str]] = []
    for i, queue in enumerate(order):
        for group in replies[i * 4 : i * 4 + 4]:
            ids.extend((queue, str(j)) for j in group)
    counts: dict[str, Counter[str]] = {q: Counter() for q in order}
    malformed: dict[str, list[str]] = {q: [] for q in order}
    if ids:
        pipe = client.pipeline(transaction=False)
        for queue, job_id in ids:
            pipe.hgetall(QueueKeys(prefix, queue).job(job_id))
        for (queue, job_id), fields in zip(ids, await pipe.execute(), strict=True):
            if not fields:
                continue  # finished and removed since the first read
            try:
                counts[queue][parse_job_hash(job_id, fields).name] += 1
            except MalformedJob as exc:
                malformed[queue].append(str(exc))
    clean = True
    for queue in order:
        missing = {n: c for n, c in counts[queue].items() if n not in served[queue]}
        for name, count in sorted(missing.items()):
            clean = False
            report.add(Finding(
                Severity.ERROR, "unhandled_jobs",
                f"{queue}: {count} pending job(s) named '{name}' and a Python worker serving {queue} has no handler "
                "for it: it will fail them ('no handler')",
                f"add @twenty_jobs.job(queue='{queue}', name='{name}') to the worker's modules, or leave {queue} to "
                "Node (WORKER_EXCLUDED_QUEUES for twenty-jobs, remove it there for Twenty)",
                queue,
            ))
        if malformed[queue]:
            clean = False
            report.add(Finding(
                Severity.WARN, "malformed_jobs",
                f"{queue}: {len(malformed[queue])} pending job(s) hold data no BullMQ writes; a Python worker fails "
                f"each on fetch with the reason, e.g. {malformed[queue][0]}",
                f"find the producer that wrote them (`{command('failed', 'list', queue, prefix=prefix)}` shows the "
                "reasons once they ran)",
                queue,
            ))
    if clean:
        report.add(Finding(Severity.OK, "unhandled_jobs",
                           f"every pending job on the Python-served queues has a handler ({', '.join(order)})"))


async def _check_finished_memory(
    client: aioredis.Redis, prefix: str, report: DoctorReport, snapshots: dict[str, QueueSnapshot]
) -> None:
    sampled: list[tuple[QueueSnapshot, str, int]] = []
    for snap in snapshots.values():
        keys = QueueKeys(prefix, snap.name)
        sampled += [(snap, key, n) for key, n in ((keys.completed, snap.completed), (keys.failed, snap.failed)) if n]
    if not sampled:
        report.add(Finding(Severity.OK, "finished_memory", "no finished jobs are kept"))
        return
    pipe = client.pipeline(transaction=False)
    for _, state_key, _ in sampled:
        pipe.zrevrange(state_key, 0, MEMORY_SAMPLE - 1)
    id_lists = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for (snap, _, _), ids in zip(sampled, id_lists, strict=True):
        for job_id in ids:
            pipe.memory_usage(QueueKeys(prefix, snap.name).job(str(job_id)), samples=0)
    try:
        usages = await pipe.execute()
    except ResponseError as exc:
        report.add(Finding(Severity.INFO, "finished_memory",
                           f"cannot measure finished jobs (MEMORY USAGE refused: {exc})"))
        return
    per_queue: dict[str, float] = {}
    pos = 0
    for (snap, _, count), ids in zip(sampled, id_lists, strict=True):
        sizes = [int(u) for u in usages[pos : pos + len(ids)] if u]
        pos += len(ids)
        if sizes:
            per_queue[snap.name] = per_queue.get(snap.name, 0.0) + count * sum(sizes) / len(sizes)
    total = sum(per_queue.values())
    used = int(report.redis.get("used_memory") or 0)
    top = ", ".join(f"{q} {_fmt_bytes(b)}" for q, b in sorted(per_queue.items(), key=lambda kv: -kv[1])[:5])
    share = f" ({100 * total / used:.0f}% of used memory)" if used else ""
    message = f"finished jobs hold about {_fmt_bytes(total)}{share}: {top}"
    if total > FINISHED_MEMORY_WARN_BYTES or (used and total > 0.5 * used and total > 10 * 1024 * 1024):
        report.add(Finding(
            Severity.WARN, "finished_memory", message,
            f"clean old ones (`{command('queue', 'clean', 'QUEUE', '--older-than', '1d', prefix=prefix)}`) and keep "
            "job payloads small; "
            "Twenty keeps up to 1000 completed (4 h) and 1000 failed (7 days) per queue",
        ))
    else:
        report.add(Finding(Severity.INFO, "finished_memory", message))
