"""Redis Cluster: the node that serves a key prefix's hash slot.

BullMQ on a cluster needs a prefix with a hash tag, such as `{bull}`: Redis Cluster hashes only
the text between the first `{` and the next `}` of a key, so `{bull}:webhook-queue:wait` and
every other key of every queue under that prefix land in one slot, on one node, and the Lua
scripts (which touch many keys at once) are allowed. twenty-jobs therefore connects to that one
node, found on every (re)connect by asking the seed nodes (CLUSTER SLOTS). A MOVED reply (the
slot moved: resharding, or a failover) drops the connection so the next attempt finds the new
owner. See docs/connections.md ("Cluster").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError, MovedError, RedisError

from twenty_jobs.connection.endpoint import Endpoint
from twenty_jobs.connection.relocating import RelocatingConnection

if TYPE_CHECKING:
    from twenty_jobs.connection.target import RedisTarget


def hash_tag(prefix: str) -> str | None:
    """The hash tag of a key prefix, by Redis Cluster's rule: the text between the first `{` and
    the first `}` after it, if that text is not empty; otherwise None (the whole key is hashed)."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end <= start + 1:
        return None
    return prefix[start + 1 : end]


def tag_slot(tag: str) -> int:
    return int(key_slot(tag.encode()))


async def slot_owner(target: RedisTarget) -> Endpoint:
    """Ask the seed nodes, in order, which master serves the slot of the target's hash tag.
    Raises a redis-py ConnectionError (retried by callers) when no seed answers."""
    assert target.cluster_tag is not None
    slot = tag_slot(target.cluster_tag)
    reasons: list[str] = []
    for seed in target.nodes:
        client = aioredis.Redis(
            host=seed.host,
            port=seed.port,
            username=target.username,
            password=target.password,
            socket_timeout=target.connect_timeout_s,
            socket_connect_timeout=target.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            **(target.tls.redis_py_kwargs() if target.tls is not None else {}),
        )
        try:
            ranges = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        except RedisError as exc:
            reasons.append(f"{seed}: {str(exc).rstrip('.')}")
            continue
        finally:
            await client.aclose()
        owner = owner_of(ranges, slot, seed)
        if owner is not None:
            return owner
        reasons.append(f"{seed}: no node serves slot {slot}")
    raise ConnectionError(
        f"no Redis Cluster node found for slot {slot} of {{{target.cluster_tag}}}: {'; '.join(reasons)}"
    )


def owner_of(ranges: Any, slot: int, seed: Endpoint) -> Endpoint | None:
    """The master in a CLUSTER SLOTS reply (`[[start, end, [ip, port, id, ...], replicas...]]`)
    that serves `slot`. A node that does not know its own address reports "" or "?": it is then
    the seed we asked."""
    for entry in ranges or ():
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        if start <= slot <= end:
            host = str(master[0])
            return Endpoint(seed.host if host in ("", "?") else host, int(master[1]))
    return None


class SlotOwnerConnection(RelocatingConnection):
    """A redis-py connection to whichever node serves the target's slot, looked up on every
    connect attempt (connection/relocating.py), and dropped on a MOVED reply."""

    def __init__(self, *, locate_owner: Callable[[], Awaitable[Endpoint]], **kwargs: Any) -> None:
        self.locate_owner = locate_owner
        super().__init__(**kwargs)

    async def locate(self) -> tuple[str, int]:
        owner = await self.locate_owner()
        return owner.host, owner.port

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except MovedError:
            # The slot is served elsewhere now; the command did not run, so it is safe to retry.
            await self.disconnect()
            raise ConnectionError("the hash slot moved to another cluster node; reconnecting") from None


class SlotOwnerSSLConnection(SlotOwnerConnection, SSLConnection):
    pass
