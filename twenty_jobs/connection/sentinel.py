"""Redis Sentinel: finding the current master, and saying so when it changes.

Every new connection asks the sentinels for the master (SENTINEL MASTERS, skipping a master
they consider down). After a failover Sentinel itself closes the clients of the old and the new
master (`CLIENT KILL TYPE normal` is part of its reconfiguration), so every connection
reconnects, asks again and reaches the new master. Each process logs the switch once, whichever
of its connections sees it first. See docs/connections.md ("Sentinel").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff

from twenty_jobs.connection.endpoint import Endpoint
from twenty_jobs.connection.relocating import RelocatingConnection

if TYPE_CHECKING:
    from twenty_jobs.connection.target import RedisTarget

log = logging.getLogger("twenty_jobs.redis")

# The master each (master name, sentinels) was last seen at in this process.
_last_master: dict[tuple[str, tuple[Endpoint, ...]], Endpoint] = {}


def note_master(target: RedisTarget, master: Endpoint) -> None:
    """Remember where the master is; log when it is first found and when it moves."""
    assert target.sentinel_name is not None
    key = (target.sentinel_name, target.nodes)
    previous = _last_master.get(key)
    _last_master[key] = master
    if previous is None:
        log.info("Redis Sentinel: master '%s' is at %s", target.sentinel_name, master)
    elif previous != master:
        log.warning(
            "Redis Sentinel: master '%s' moved from %s to %s (failover)", target.sentinel_name, previous, master
        )


def sentinel_manager(target: RedisTarget) -> Sentinel:
    """redis-py's Sentinel for the target's sentinels, with the sentinels' own credentials and
    the target's TLS. Sentinel queries are short, so they may time out (unlike data reads)."""
    kwargs: dict[str, Any] = {
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "socket_timeout": target.connect_timeout_s,
        "socket_connect_timeout": target.connect_timeout_s,
        # One try per sentinel per lookup: the connection asking retries the whole lookup.
        "retry": Retry(NoBackoff(), 0),
    }
    if target.tls is not None:
        kwargs.update(target.tls.redis_py_kwargs())
    return Sentinel([(n.host, n.port) for n in target.nodes], sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call]


async def close_manager(manager: Sentinel) -> None:
    for client in manager.sentinels:
        await client.aclose()


async def current_master(target: RedisTarget) -> Endpoint:
    """Ask the sentinels where the master is now. Raises MasterNotFoundError (a redis-py
    ConnectionError, so callers retry it) when none of them knows a healthy one."""
    manager = sentinel_manager(target)
    try:
        host, port = await find_master(manager, target)
    finally:
        await close_manager(manager)
    master = Endpoint(str(host), int(port))
    note_master(target, master)
    return master


async def find_master(manager: Sentinel, target: RedisTarget) -> tuple[Any, Any]:
    assert target.sentinel_name is not None
    try:
        address: tuple[Any, Any] = await manager.discover_master(target.sentinel_name)
        return address
    except MasterNotFoundError:
        # redis-py's message lists every sentinel client's repr; one line is enough.
        raise MasterNotFoundError(
            f"no sentinel of {','.join(str(n) for n in target.nodes)} answered with a healthy master "
            f"named '{target.sentinel_name}' (check REDIS_SENTINELS and REDIS_SENTINEL_NAME)"
        ) from None


class LoggedSentinelPool(SentinelConnectionPool):
    """redis-py's pool of master connections (each connect asks the sentinels), which also
    logs a switch and closes the sentinels' connections with its own."""

    def __init__(self, target: RedisTarget, manager: Sentinel, **connection_kwargs: Any) -> None:
        assert target.sentinel_name is not None
        super().__init__(target.sentinel_name, manager, **connection_kwargs)  # type: ignore[no-untyped-call]
        self.target = target
        self.manager = manager

    async def get_master_address(self) -> Any:
        try:
            address = await super().get_master_address()  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            # Ask again through find_master for its one-line message.
            address = await find_master(self.manager, self.target)
        note_master(self.target, Endpoint(str(address[0]), int(address[1])))
        return address

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for client in self.manager.sentinels:
            await client.connection_pool.disconnect()


class MasterConnection(RelocatingConnection, SentinelManagedConnection):
    """A connection to the current master, looked up on every connect attempt (see
    connection/relocating.py); a READONLY reply (the master was demoted under it) drops the
    connection, as in redis-py's SentinelManagedConnection."""

    async def locate(self) -> tuple[str, int]:
        host, port = await self.connection_pool.get_master_address()
        return str(host), int(port)


class MasterSSLConnection(MasterConnection, SSLConnection):
    pass


def master_pool(target: RedisTarget, *, ssl: bool, connection_kwargs: dict[str, Any]) -> LoggedSentinelPool:
    """A connection pool whose connections go to the target's current master."""
    connection_class = MasterSSLConnection if ssl else MasterConnection
    return LoggedSentinelPool(target, sentinel_manager(target), connection_class=connection_class,
                              **connection_kwargs)
