"""Rules that more than one command applies, each written once: `check`, `doctor` and `status`
call these and so always say the same thing about the same queue.
"""

from __future__ import annotations

from twenty_jobs.ops.findings import Finding, Severity, command
from twenty_jobs.wire.compat import (
    LEGACY_REPEATABLE_FIX,
    LEGACY_REPEATABLE_HAZARD,
    NODE_BELOW_6_FIX,
    LegacyRepeatable,
    NodeVersion,
    node_below_6_hazards,
    parse_meta_version,
)
from twenty_jobs.wire.counts import QueueSnapshot


def describe_ready(snap: QueueSnapshot) -> str:
    """`3 job(s) ready (2 waiting, 1 due delayed)`."""
    parts = [f"{n} {what}" for n, what in (
        (snap.waiting, "waiting"), (snap.prioritized, "prioritized"), (snap.due_delayed, "due delayed"),
    ) if n]
    return f"{snap.ready} job(s) ready ({', '.join(parts)})" if parts else "no job ready"


def nothing_under_prefix(prefix: str) -> Finding:
    """No queue and no worker under the prefix: most often the wrong Redis or prefix, not a
    healthy deployment (`check` fails on it and `status` exits 1)."""
    return Finding(
        Severity.ERROR, "nothing_under_prefix",
        f"no BullMQ queue and no twenty-jobs worker under prefix '{prefix}' in this Redis",
        "check the Redis URL (REDIS_QUEUE_URL, REDIS_URL or --redis-url) and --prefix "
        "(Twenty's queues live under 'bull')",
    )


def ready_without_consumer(snap: QueueSnapshot, consumers: int, prefix: str) -> Finding | None:
    """Jobs a worker could take now, and no worker of any language connected: they never run."""
    if snap.is_paused or not snap.ready or consumers:
        return None
    queue = snap.name
    return Finding(
        Severity.ERROR, "no_consumer",
        f"{queue}: {describe_ready(snap)} and no worker, Node or Python, is connected: they will never run",
        f"start a worker for it (`{command('work', '--queue', queue, prefix=prefix)}`), or take {queue} out of "
        "WORKER_EXCLUDED_QUEUES / add it to WORKER_ENABLED_QUEUES on Twenty's worker",
        queue,
    )


def paused_with_jobs(snap: QueueSnapshot, prefix: str) -> Finding | None:
    """A paused queue holding jobs: not an error (someone paused it), but nothing runs."""
    held = snap.ready + snap.paused_jobs
    if not snap.is_paused or not held:
        return None
    node = parse_meta_version(snap.meta_version)
    if node is not None and node.below_6:
        # A Python resume is refused there (wire/compat.py): the Node side has to do it.
        fix = f"resume it from Twenty/Node (Node bullmq {node} shares it) if the pause was not intended"
    else:
        fix = f"`{command('queue', 'resume', snap.name, prefix=prefix)}` if the pause was not intended"
    return Finding(
        Severity.WARN, "queue_paused",
        f"{snap.name}: the queue is paused with {held} job(s) waiting; no worker takes them until it is resumed",
        fix, snap.name,
    )


def node_below_6(version: NodeVersion, queues: list[str], shared: list[str]) -> Finding:
    """The Node bullmq that last opened `queues` (those of them Python serves: `shared`)."""
    listed = ", ".join(queues)
    if not version.below_6:
        return Finding(Severity.OK, "node_version",
                       f"Node bullmq {version} on {listed}: the same Lua generation as the Python port")
    where = f"shared with Python workers on {', '.join(shared)}" if shared else "no Python worker serves them now"
    return Finding(
        Severity.WARN if shared else Severity.INFO, "node_below_6",
        f"Node bullmq {version} (below 6) writes {listed} ({where}): " + " ".join(node_below_6_hazards(version)),
        NODE_BELOW_6_FIX if shared else None,
    )


def legacy_repeatable(entry: LegacyRepeatable, served_by_python: bool, prefix: str) -> Finding:
    """A pre-job-scheduler repeatable job: harmless to Node 5, broken by a Python worker."""
    where = ("and a Python worker serves this queue" if served_by_python
             else "so Python workers must not serve this queue while it exists")
    return Finding(
        Severity.ERROR if served_by_python else Severity.WARN, "legacy_repeatable",
        f"{entry.queue}: legacy repeatable job '{entry.key}' ({entry.name or '?'}, {entry.schedule}) from an old "
        f"Twenty release: {LEGACY_REPEATABLE_HAZARD}, {where}",
        LEGACY_REPEATABLE_FIX.replace("removeRepeatableByKey(key)", f"removeRepeatableByKey('{entry.key}')")
        .replace("`twenty-jobs cron register`", f"`{command('cron', 'register', prefix=prefix)}`"),
        entry.queue,
    )
