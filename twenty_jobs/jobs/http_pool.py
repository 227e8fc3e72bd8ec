"""Keep-alive that cannot mix up host names: one connection pool per (scheme, address, port,
host name).

The webhook client connects, in safe mode, to the address it checked for the host name (URL host
= that address; `Host` header and TLS SNI = the name; jobs/outbound.py). httpx pools connections
by the URL's (scheme, host, port), which is then the address: a connection opened for one name,
its TLS certificate verified for that name, would be reused for a request to another name that
resolves to the same address, which nobody verified. Here each (scheme, address, port, Host
header) gets its own httpx transport, so a kept-alive connection only ever carries requests for
the name it was opened and verified for, to the address checked for that name. Without safe mode
the URL host is the name itself, and the key says the same thing twice.

Pools are kept for the life of the worker process, at most MAX_POOLS of them: past that, the pool
used least recently that has no request in flight is closed.
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

MAX_POOLS = 256
# Idle kept-alive connections are closed after this long: under the 5 s keep-alive timeout of
# Node's http server (a common webhook receiver), so we rarely send on a connection it is closing.
KEEPALIVE_EXPIRY_S = 4.0

PoolKey = tuple[str, str, int | None, str]


@dataclass
class _Pool:
    transport: httpx.AsyncHTTPTransport
    in_flight: int = 0


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed (the request is then over)."""

    def __init__(self, inner: httpx.AsyncByteStream, pool: _Pool) -> None:
        self._inner = inner
        self._pool: _Pool | None = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._pool is not None:
                self._pool.in_flight -= 1
                self._pool = None


class PinnedPoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport with one keep-alive pool per (scheme, address, port, host name)."""

    def __init__(self, *, verify: ssl.SSLContext, keepalive_per_pool: int, max_pools: int = MAX_POOLS) -> None:
        self._verify = verify
        self._keepalive = keepalive_per_pool
        self._max_pools = max_pools
        self._pools: collections.OrderedDict[PoolKey, _Pool] = collections.OrderedDict()

    @property
    def pool_count(self) -> int:
        return len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        pool = await self._pool((url.scheme, url.host, url.port, request.headers.get("host", "")))
        pool.in_flight += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.in_flight -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, pool),
            extensions=response.extensions,
        )

    async def _pool(self, key: PoolKey) -> _Pool:
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        if len(self._pools) >= self._max_pools:
            idle = next((k for k, p in self._pools.items() if p.in_flight == 0), None)
            if idle is not None:
                await self._pools.pop(idle).transport.aclose()
        pool = self._pools[key] = _Pool(httpx.AsyncHTTPTransport(
            verify=self._verify,
            trust_env=False,  # a proxy would defeat the address check
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=self._keepalive,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S),
        ))
        return pool

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), collections.OrderedDict()
        for pool in pools:
            await pool.transport.aclose()
