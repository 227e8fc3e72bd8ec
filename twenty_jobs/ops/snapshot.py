"""Read-only queries about the queues in one Redis: which queues exist under a prefix, and which
worker connections Redis knows about. The job counts themselves are read by
`twenty_jobs.wire.counts` (the heartbeat needs them too, below this layer).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from twenty_jobs.wire.counts import QueueSnapshot
from twenty_jobs.wire.keys import QueueKeys, glob_escape, meta_key, queue_of_meta_key, worker_client_name


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
    async for key in client.scan_iter(match=meta_key(glob_escape(prefix), "*"), count=1000):
        queue = queue_of_meta_key(prefix, key.decode() if isinstance(key, bytes) else str(key))
        if queue:
            found.add(queue)
    return sorted(found)


async def queue_exists(client: aioredis.Redis, prefix: str, queue: str) -> bool:
    """True when Redis holds the queue's `meta` hash or its job-id counter."""
    keys = QueueKeys(prefix, queue)
    return bool(await client.exists(keys.meta, keys.id))

