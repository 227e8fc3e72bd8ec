"""Job counts per BullMQ state and the queue's `meta` flags, read in one pipeline.

Counting is plain LLEN/ZCARD rather than the port's `getCounts` Lua so that the legacy `paused`
list a Node bullmq < 6 fills is read too (the port's counts show 0 for it, docs/mixed-versions.md).
The states and their key types are BullMQ's (docs/operations.md, "Where a job lives").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.wire.compat import parse_meta_version
from twenty_jobs.wire.keys import QueueKeys

# BullMQ stores a delayed job under the score `due_ms * 0x1000 + n` (n < 0x1000 breaks ties;
# getDelayedScore in addDelayedJob.lua), so "due now" is every score below `(now + 1) * 0x1000`.
DELAYED_SCORE_FACTOR = 0x1000


@dataclass(slots=True)
class QueueSnapshot:
    """One queue's job counts and meta, as read at one instant."""

    name: str
    waiting: int = 0
    prioritized: int = 0
    active: int = 0
    delayed: int = 0
    # Delayed jobs whose time has come; only a worker's fetch promotes them, so with no worker
    # they wait forever just like `waiting` ones.
    due_delayed: int = 0
    completed: int = 0
    failed: int = 0
    # Jobs in the legacy `paused` list (Node bullmq < 6 moves waiting jobs there on pause).
    paused_jobs: int = 0
    waiting_children: int = 0
    # `meta.paused` is set: no worker, Node or Python, fetches from this queue.
    is_paused: bool = False
    # `meta.version` as Node's Queue writes it, e.g. "bullmq:5.40.0" (None: no Node Queue seen).
    meta_version: str | None = None
    # Worker connections named for this queue in CLIENT LIST (None: CLIENT LIST not allowed).
    workers: int | None = None

    @property
    def ready(self) -> int:
        """Jobs a worker could take right now."""
        return self.waiting + self.prioritized + self.due_delayed

    @property
    def node_version(self) -> str | None:
        version = parse_meta_version(self.meta_version)
        return str(version) if version is not None else None

    @property
    def count(self) -> int:
        """Node's `queue.count()` (what Twenty's `twenty_queue_jobs_waiting_total` gauge reports):
        waiting + paused + delayed + prioritized + waiting-children."""
        return self.waiting + self.paused_jobs + self.delayed + self.prioritized + self.waiting_children

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ready"] = self.ready
        out["node_bullmq"] = self.node_version
        return out


COMMANDS_PER_QUEUE = 10


def queue_commands(pipe: Any, prefix: str, queue: str, now_ms: int) -> None:
    """Queue the COMMANDS_PER_QUEUE reads `snapshot_from` decodes onto a pipeline."""
    keys = QueueKeys(prefix, queue)
    pipe.llen(keys.wait)
    pipe.zcard(keys.prioritized)
    pipe.llen(keys.active)
    pipe.zcard(keys.delayed)
    pipe.zcount(keys.delayed, 0, (now_ms + 1) * DELAYED_SCORE_FACTOR - 1)
    pipe.zcard(keys.completed)
    pipe.zcard(keys.failed)
    pipe.llen(keys.paused)
    pipe.zcard(keys.waiting_children)
    pipe.hmget(keys.meta, ["paused", "version"])


def snapshot_from(queue: str, replies: list[Any]) -> QueueSnapshot:
    paused_flag, version = replies[9]
    return QueueSnapshot(
        name=queue,
        waiting=int(replies[0]),
        prioritized=int(replies[1]),
        active=int(replies[2]),
        delayed=int(replies[3]),
        due_delayed=int(replies[4]),
        completed=int(replies[5]),
        failed=int(replies[6]),
        paused_jobs=int(replies[7]),
        waiting_children=int(replies[8]),
        is_paused=paused_flag is not None,
        meta_version=_text(version),
    )


async def read_queues(
    client: aioredis.Redis, prefix: str, queues: list[str], now_ms: int
) -> dict[str, QueueSnapshot]:
    """Counts and meta of every queue in `queues`, in one round trip."""
    if not queues:
        return {}
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        queue_commands(pipe, prefix, queue, now_ms)
    replies = await pipe.execute()
    return {
        queue: snapshot_from(queue, replies[i * COMMANDS_PER_QUEUE : (i + 1) * COMMANDS_PER_QUEUE])
        for i, queue in enumerate(queues)
    }


async def is_paused(client: aioredis.Redis, keys: QueueKeys) -> bool:
    """Whether `meta.paused` is set: no worker of any version fetches from the queue."""
    return bool(await client.hexists(keys.meta, "paused"))  # type: ignore[misc]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
