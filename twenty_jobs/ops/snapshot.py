"""Read-only snapshots of BullMQ queues: job counts per state, the queue's `meta` hash and the
worker connections Redis knows about. One pipeline per call, whatever the number of queues.

Counting is done with plain LLEN/ZCARD rather than the port's `getCounts` Lua so that it reads
the legacy `paused` list a Node 5 producer may still fill (bullmq-python.md §5: the port's own
counts show 0 for it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from twenty_jobs.wire.compat import parse_meta_version
from twenty_jobs.wire.keys import meta_key, queue_key, queue_of_meta_key, worker_client_name

# BullMQ stores a delayed job under the score `due_ms * 0x1000 + n` (n < 0x1000 breaks ties; see
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


def queue_commands(pipe: Any, prefix: str, queue: str, now_ms: int) -> None:
    """Queue the COMMANDS_PER_QUEUE reads `snapshot_from` decodes onto a pipeline."""
    pipe.llen(queue_key(prefix, queue, "wait"))
    pipe.zcard(queue_key(prefix, queue, "prioritized"))
    pipe.llen(queue_key(prefix, queue, "active"))
    pipe.zcard(queue_key(prefix, queue, "delayed"))
    pipe.zcount(queue_key(prefix, queue, "delayed"), 0, (now_ms + 1) * DELAYED_SCORE_FACTOR - 1)
    pipe.zcard(queue_key(prefix, queue, "completed"))
    pipe.zcard(queue_key(prefix, queue, "failed"))
    pipe.llen(queue_key(prefix, queue, "paused"))
    pipe.zcard(queue_key(prefix, queue, "waiting-children"))
    pipe.hmget(meta_key(prefix, queue), ["paused", "version"])


COMMANDS_PER_QUEUE = 10


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


async def ping(client: aioredis.Redis) -> None:
    """PING, raising redis' ConnectionError/TimeoutError when Redis does not answer."""
    await client.ping()  # type: ignore[misc]  # redis-py types ping() as bool | Awaitable[bool]


async def client_names(client: aioredis.Redis) -> list[str] | None:
    """Names of every connection to Redis, or None where CLIENT LIST is refused (some managed
    Redis services disable it; Node's `getWorkers()` cannot count workers there either)."""
    try:
        clients = await client.client_list()
    except ResponseError:
        return None
    return [str(c.get("name") or "") for c in clients]


def count_workers(names: list[str], prefix: str, queue: str) -> int:
    """Worker connections of `queue` exactly as Node's `queue.getWorkers()` matches them: the name
    `<prefix>:<base64(queue)>` or that name followed by `:w:<worker name>`. Twenty's Node workers
    and twenty-jobs' Python workers both name their blocking connection this way."""
    base = worker_client_name(prefix, queue)
    named = base + ":w:"
    return sum(1 for n in names if n == base or n.startswith(named))


def attach_worker_counts(snapshots: dict[str, QueueSnapshot], names: list[str] | None, prefix: str) -> None:
    for snap in snapshots.values():
        snap.workers = None if names is None else count_workers(names, prefix, snap.name)


async def discover_queues(client: aioredis.Redis, prefix: str) -> list[str]:
    """Queues under `prefix` that have a `meta` hash. Node's Queue writes it at construction and
    every BullMQ add script writes `opts.maxLenEvents` into it, so any queue that ever held a job
    has one. This SCANs the whole keyspace: fine for a command, not for a hot loop."""
    found: set[str] = set()
    async for key in client.scan_iter(match=meta_key(prefix, "*"), count=1000):
        queue = queue_of_meta_key(prefix, _text(key) or "")
        if queue:
            found.add(queue)
    return sorted(found)


async def queue_exists(client: aioredis.Redis, prefix: str, queue: str) -> bool:
    """True when Redis holds the queue's `meta` hash or its job-id counter."""
    return bool(await client.exists(meta_key(prefix, queue), queue_key(prefix, queue, "id")))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
