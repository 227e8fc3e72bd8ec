"""A redis-py connection that asks where to connect on every connect attempt (Sentinel: the
current master; Cluster: the node serving the slot).

redis-py 7's asyncio connection reconnects a dropped connection from `send_packed_command`
through `connect_check_health`, which skips the `connect()` that redis-py's own
SentinelManagedConnection overrides, so after a failover it dialled the old master again and
again (each time answered READONLY). Locating inside `connect_check_health` covers both paths,
and locating on every attempt means a retry after the old address died finds the new one.
See docs/connections.md ("Sentinel").
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import Connection


class RelocatingConnection(Connection):
    async def locate(self) -> tuple[str, int]:
        """Where to connect now."""
        raise NotImplementedError

    async def connect(self) -> None:
        await self.connect_check_health(check_health=True, retry_socket_connect=True)

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self.is_connected:
            return
        connect_here = super().connect_check_health

        async def attempt() -> None:
            self.host, self.port = await self.locate()
            await connect_here(check_health=check_health, retry_socket_connect=False)

        if retry_socket_connect:
            await self.retry.call_with_retry(attempt, self.forget)
        else:
            await attempt()

    async def forget(self, error: Any) -> None:
        """After a failed attempt: drop what is left of the connection before the next one."""
        await self.disconnect()
