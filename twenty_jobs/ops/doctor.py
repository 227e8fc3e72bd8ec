"""`twenty-jobs doctor`: what is wrong or risky in this Redis, and what to do about each.

Every check reads; nothing is changed. Findings carry a level (ok, info, warn, error) and, for
anything above info, the fix in one sentence. The checks come from what breaks Twenty installs
(peers.md §2) and from mixing the Python port with Twenty's Node bullmq (bullmq-python.md §4-§5).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from twenty_jobs.observability.health import HeartbeatRecord, read_heartbeats
from twenty_jobs.ops.crons import list_crons
from twenty_jobs.ops.shared_queues import PythonWorkerView, shared_queue_findings
from twenty_jobs.ops.snapshot import QueueSnapshot, attach_worker_counts, client_names, read_queues
from twenty_jobs.runtime.config import UnknownJobs
from twenty_jobs.runtime.registry import Registry
from twenty_jobs.wire.compat import NodeVersion
from twenty_jobs.wire.keys import job_key, queue_key

LEVELS = ("ok", "info", "warn", "error")
# BullMQ's RedisConnection: minimum_version / recommended_minimum_version.
REDIS_MINIMUM = (5, 0, 0)
REDIS_RECOMMENDED = (6, 2, 0)
# How many pending job ids per state are read to find job names without a handler.
NAME_SAMPLE = 1000
# Finished-job hashes sampled per queue and state for MEMORY USAGE.
MEMORY_SAMPLE = 50
FINISHED_MEMORY_WARN_BYTES = 100 * 1024 * 1024


@dataclass(slots=True)
class DoctorFinding:
    level: str
    topic: str
    message: str
    fix: str | None = None
    queue: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class DoctorReport:
    findings: list[DoctorFinding] = field(default_factory=list)
    redis: dict[str, Any] = field(default_factory=dict)
    queues: list[str] = field(default_factory=list)

    def add(self, level: str, topic: str, message: str, fix: str | None = None, queue: str | None = None) -> None:
        self.findings.append(DoctorFinding(level, topic, message, fix, queue))

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.level == "warn")

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
    _check_consumers(report, snapshots, python)
    await _check_unserved_names(client, prefix, report, snapshots, python, registry)
    views = {q: [PythonWorkerView(frozenset(h.handlers), h.unknown_jobs) for h in hbs]
             for q, hbs in python.items() if q in snapshots}
    for found in await shared_queue_findings(client, prefix, views, names):
        report.add(found.level, "shared", found.message, found.fix, found.queue)
    await _check_finished_memory(client, prefix, report, snapshots)
    return report


async def _check_redis(client: aioredis.Redis, report: DoctorReport) -> None:
    try:
        info = await client.info()
    except ResponseError as exc:  # INFO refused by an ACL or a managed Redis
        report.add("warn", "redis", f"cannot read Redis INFO ({exc})",
                   "check by hand that the queue Redis runs with maxmemory-policy noeviction")
        return
    version = str(info.get("redis_version", "?"))
    policy = info.get("maxmemory_policy")
    maxmemory = int(info.get("maxmemory") or 0)
    used = int(info.get("used_memory") or 0)
    report.redis = {"version": version, "maxmemory_policy": policy, "maxmemory": maxmemory, "used_memory": used}
    vt = version_tuple(version) or (0,)
    if vt < REDIS_MINIMUM:
        report.add("error", "redis", f"Redis {version} is older than BullMQ's minimum 5.0.0",
                   "upgrade Redis (6.2 or newer; 7.x is best)")
    elif vt < REDIS_RECOMMENDED:
        report.add("warn", "redis", f"Redis {version} is older than the 6.2.0 BullMQ recommends",
                   "upgrade Redis to 6.2 or newer")
    else:
        report.add("ok", "redis", f"Redis {version}")
    if policy is None:
        report.add("warn", "redis", "cannot read maxmemory-policy (INFO memory hides it)",
                   "make sure the queue Redis runs with maxmemory-policy noeviction")
    elif policy != "noeviction":
        report.add("error", "redis",
                   f"maxmemory-policy is '{policy}': under memory pressure Redis may evict job hashes, locks "
                   "and queue lists, and jobs vanish without an error",
                   "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)")
    else:
        report.add("ok", "redis", "maxmemory-policy is noeviction")
    if maxmemory and used > 0.8 * maxmemory:
        report.add("warn", "redis",
                   f"Redis uses {_fmt_bytes(used)} of its {_fmt_bytes(maxmemory)} maxmemory "
                   f"({100 * used / maxmemory:.0f}%); "
                   "at the limit every write fails (noeviction) and queues stop",
                   "raise maxmemory or free memory (see the finished-jobs finding below)")


def _check_node_versions(
    report: DoctorReport, snapshots: dict[str, QueueSnapshot], python: dict[str, list[HeartbeatRecord]]
) -> None:
    by_version: dict[str, list[str]] = {}
    for snap in snapshots.values():
        if snap.node_version:
            by_version.setdefault(snap.node_version, []).append(snap.name)
    if not by_version:
        report.add("info", "node", "no Node bullmq has opened these queues (no `version` in their meta hash)")
        return
    for version, queues in sorted(by_version.items()):
        node = NodeVersion.parse(version) or NodeVersion(0, 0, 0)
        shared = [q for q in queues if q in python]
        listed = ", ".join(queues)
        if not node.below_6:
            report.add("ok", "node", f"Node bullmq {version} on {listed}: the same Lua generation as the Python port")
            continue
        hazards = [
            "never pause or resume these queues from Python (a Node 5 resume RENAMEs its paused list over "
            "`wait` and jobs added meanwhile are lost)",
        ]
        if node.stall_counter_field != "stc":
            hazards.append(
                "stalled jobs are counted in two fields (`stalledCounter` by Node, `stc` by Python), so with both "
                "stall checkers running maxStalledCount is in effect doubled"
            )
        if not node.honours_deferred_failure:
            hazards.append(
                "a job the Python stall checker fails lazily (`defa`) can be run and completed by a Node worker "
                "instead of failed"
            )
        level = "warn" if shared else "info"
        where = f"shared with Python workers on {', '.join(shared)}" if shared else "no Python worker serves them now"
        report.add(
            level, "node",
            f"Node bullmq {version} (below 6) writes {listed} ({where}): " + "; ".join(hazards),
            "upgrade Twenty's bullmq to 6.x before mixing, or keep each queue on one side "
            "(WORKER_EXCLUDED_QUEUES on Node for the queues Python serves)" if shared else None,
        )


async def _check_legacy_repeatables(
    client: aioredis.Redis, prefix: str, queues: list[str], report: DoctorReport,
    python: dict[str, list[HeartbeatRecord]],
) -> None:
    legacy = [c for c in await list_crons(client, prefix, queues) if c.kind == "legacy"]
    if not legacy:
        report.add("ok", "cron", "no legacy repeatable jobs (every cron is a job scheduler)")
    for entry in legacy:
        served = entry.queue in python
        report.add(
            "error" if served else "warn", "cron",
            f"{entry.queue}: legacy repeatable job '{entry.id}' ({entry.name}, {entry.schedule}) from an old Twenty "
            "release" + (": a Python worker advancing it runs it with empty data or stops it" if served else
                         ": Python workers must not serve this queue while it exists"),
            f"remove it with Node bullmq 5 (queue.removeRepeatableByKey('{entry.id}')), then re-create the cron as a "
            "job scheduler (Twenty: `yarn command:prod cron:register:all`; Python: `twenty-jobs cron register`)",
            entry.queue,
        )


def _check_consumers(
    report: DoctorReport, snapshots: dict[str, QueueSnapshot], python: dict[str, list[HeartbeatRecord]]
) -> None:
    silent = True
    for snap in snapshots.values():
        consumers = max(snap.workers or 0, len(python.get(snap.name, [])))
        if snap.is_paused and (snap.ready or snap.paused_jobs):
            silent = False
            report.add("warn", "consumers", f"{snap.name}: paused with {snap.ready + snap.paused_jobs} job(s) waiting",
                       "resume it (from Node while Node bullmq < 6 shares it) if the pause was not intended", snap.name)
        elif snap.ready and not consumers:
            silent = False
            report.add("error", "consumers",
                       f"{snap.name}: {snap.ready} job(s) ready and no worker, Node or Python, is connected: "
                       "they will never run",
                       f"start a worker for it (`twenty-jobs work --queue {snap.name}`) or remove it from "
                       "WORKER_EXCLUDED_QUEUES on Twenty's worker", snap.name)
    if silent:
        report.add("ok", "consumers", "every queue with jobs ready has a worker")


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
        report.add("info", "handlers", "no Python worker serves these queues (no heartbeat; pass --import to "
                   "check the handlers a worker would load)")
        return
    pipe = client.pipeline(transaction=False)
    order = list(served)
    for queue in order:
        pipe.lrange(queue_key(prefix, queue, "wait"), 0, NAME_SAMPLE - 1)
        pipe.zrange(queue_key(prefix, queue, "prioritized"), 0, NAME_SAMPLE - 1)
        pipe.zrange(queue_key(prefix, queue, "delayed"), 0, NAME_SAMPLE - 1)
        pipe.lrange(queue_key(prefix, queue, "paused"), 0, NAME_SAMPLE - 1)
    replies = await pipe.execute()
    ids: list[tuple[str, str]] = []
    for i, queue in enumerate(order):
        for group in replies[i * 4 : i * 4 + 4]:
            ids.extend((queue, str(j)) for j in group)
    counts: dict[str, Counter[str]] = {q: Counter() for q in order}
    if ids:
        pipe = client.pipeline(transaction=False)
        for queue, job_id in ids:
            pipe.hget(job_key(prefix, queue, job_id), "name")
        for (queue, _), name in zip(ids, await pipe.execute(), strict=True):
            if name is not None:
                counts[queue][str(name)] += 1
    clean = True
    for queue in order:
        missing = {n: c for n, c in counts[queue].items() if n not in served[queue]}
        for name, count in sorted(missing.items()):
            clean = False
            report.add(
                "error", "handlers",
                f"{queue}: {count} pending job(s) named '{name}' and a Python worker serving {queue} has no handler "
                "for it: it will fail them ('no handler')",
                f"add @twenty_jobs.job(queue='{queue}', name='{name}') to the worker's modules, or leave {queue} to "
                "Node (WORKER_EXCLUDED_QUEUES for twenty-jobs, remove it there for Twenty)",
                queue,
            )
    if clean:
        report.add("ok", "handlers",
                   f"every pending job on the Python-served queues has a handler ({', '.join(order)})")


async def _check_finished_memory(
    client: aioredis.Redis, prefix: str, report: DoctorReport, snapshots: dict[str, QueueSnapshot]
) -> None:
    sampled = [(s, state, n) for s in snapshots.values()
               for state, n in (("completed", s.completed), ("failed", s.failed)) if n]
    if not sampled:
        report.add("ok", "memory", "no finished jobs are kept")
        return
    pipe = client.pipeline(transaction=False)
    for snap, state, _ in sampled:
        pipe.zrevrange(queue_key(prefix, snap.name, state), 0, MEMORY_SAMPLE - 1)
    id_lists = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for (snap, _, _), ids in zip(sampled, id_lists, strict=True):
        for job_id in ids:
            pipe.memory_usage(job_key(prefix, snap.name, str(job_id)), samples=0)
    try:
        usages = await pipe.execute()
    except ResponseError as exc:
        report.add("info", "memory", f"cannot measure finished jobs (MEMORY USAGE refused: {exc})")
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
        report.add("warn", "memory", message,
                   "clean old ones (`twenty-jobs failed clean QUEUE --older-than 1d`) and keep job payloads small; "
                   "Twenty keeps up to 1000 completed (4 h) and 1000 failed (7 days) per queue")
    else:
        report.add("info", "memory", message)
