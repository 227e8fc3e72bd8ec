"""`twenty-jobs status`: one row per queue with job counts per state, paused, and live workers
(Node and Python), read in one pass."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.observability.health import HeartbeatRecord, read_heartbeats
from twenty_jobs.ops.snapshot import QueueSnapshot, attach_worker_counts, client_names, discover_queues, read_queues
from twenty_jobs.twenty.queues import KNOWN_QUEUES

# What `status` and `check` both say, and fail with, when a prefix holds no queue and no worker:
# almost always the wrong Redis or the wrong --prefix, not a healthy deployment.
NOTHING_UNDER_PREFIX = (
    "no queue and no worker under prefix '{prefix}' in this Redis: is it the Redis Twenty uses "
    "(REDIS_QUEUE_URL, or REDIS_URL), and the right --prefix?"
)


async def collect_status(
    client: aioredis.Redis, prefix: str, queues: list[str] | None, at: int
) -> list[dict[str, Any]]:
    """One row per queue (the given ones, else every queue under the prefix or with a heartbeat)."""
    heartbeats = await read_heartbeats(client, prefix)
    if queues:
        names = queues
    else:
        found = set(await discover_queues(client, prefix)) | {hb.queue for hb in heartbeats}
        # Twenty's queues in Twenty's order first, then the others alphabetically.
        names = [q for q in KNOWN_QUEUES if q in found] + sorted(found - set(KNOWN_QUEUES))
    snapshots = await read_queues(client, prefix, names, at)
    attach_worker_counts(snapshots, await client_names(client), prefix)
    return _rows(snapshots, heartbeats, at)


def _rows(snapshots: dict[str, QueueSnapshot], heartbeats: list[HeartbeatRecord], at: int) -> list[dict[str, Any]]:
    fresh: dict[str, int] = {}
    for hb in heartbeats:
        if not hb.is_stale(at):
            fresh[hb.queue] = fresh.get(hb.queue, 0) + 1
    rows = []
    for snap in snapshots.values():
        python = fresh.get(snap.name, 0)
        row = snap.as_dict()
        row["python_workers"] = python
        row["node_workers"] = None if snap.workers is None else max(0, snap.workers - python)
        rows.append(row)
    return rows
