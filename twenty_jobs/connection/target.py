"""Which Redis to use, as one parsed and validated value: `RedisTarget`.

A target is built from a URL (connection/url.py) or from the REDIS_* environment variables
(connection/env.py), and builds the connections: redis-py clients for everything that goes
through redis-py (`redis_py_client`), and the sockets of the worker's pipelined command
connection (`open_transport`, its opener). Its `redacted()` text is what messages show. The kinds:

* `tcp`: one server by host and port, optionally TLS;
* `unix`: one server on a unix socket;
* `sentinel`: the master that Redis Sentinel names, asked again on every (re)connect, so a
  failover is followed (connection/sentinel.py);
* `cluster`: the node of a Redis Cluster that serves the hash slot of the key prefix's hash tag,
  looked up again on every (re)connect (connection/cluster.py). BullMQ keeps all keys of a
  queue in one slot through that tag, so one node answers everything a queue needs.

See docs/connections.md ("Connection settings").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.asyncio.retry import Retry

from twenty_jobs.connection import cluster, sentinel
from twenty_jobs.connection.endpoint import Endpoint
from twenty_jobs.connection.tls import TlsOptions
from twenty_jobs.redaction import redacted_url

TargetKind = Literal["tcp", "unix", "sentinel", "cluster"]

# How long a connect attempt (TCP, TLS handshake) may take before it counts as failed.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
# Redis Cluster has only database 0.
CLUSTER_DB = 0


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis to connect to, with credentials, database and TLS. See the module docstring."""

    kind: TargetKind
    # tcp: the server; sentinel: the sentinels; cluster: the seed nodes.
    nodes: tuple[Endpoint, ...] = ()
    socket_path: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls: TlsOptions | None = None
    # Sentinel: the master's name (SENTINEL MONITOR <name>) and the sentinels' own credentials.
    sentinel_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    # Cluster: the hash tag (the text between `{` and `}` of the key prefix) whose slot's node we use.
    cluster_tag: str | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.db < 0:
            raise ValueError(f"the database number must be 0 or more, got {self.db}")
        if not self.connect_timeout_s > 0:
            raise ValueError("the connect timeout must be a positive number of seconds")
        if self.kind == "unix":
            if not self.socket_path or not self.socket_path.startswith("/"):
                raise ValueError("a unix socket target needs an absolute socket path (unix:///path/to/redis.sock)")
            if self.tls is not None:
                raise ValueError("TLS is not available on a unix socket")
        elif not self.nodes:
            raise ValueError(f"a {self.kind} target needs at least one host:port")
        if self.kind == "tcp" and len(self.nodes) != 1:
            raise ValueError("a single Redis server has exactly one host:port")
        if self.kind == "sentinel" and not self.sentinel_name:
            raise ValueError("a Sentinel target needs the master's name (REDIS_SENTINEL_NAME)")
        if self.kind == "cluster":
            if self.db != CLUSTER_DB:
                raise ValueError(f"Redis Cluster has only database 0, not {self.db}")
            if not self.cluster_tag:
                raise ValueError(
                    "a Redis Cluster target needs a key prefix with a hash tag, such as {bull}: "
                    "BullMQ keeps a queue's keys in one slot only through that tag"
                )

    # -- what messages show ------------------------------------------------------------------

    def url(self) -> str:
        """The target as a URL that connection/url.py reads back to the same target. It carries
        the password: for code that takes a URL, never for a message (that is `redacted()`)."""
        tls = self.tls is not None
        scheme = {
            "tcp": "rediss" if tls else "redis",
            "unix": "unix",
            "sentinel": "rediss+sentinel" if tls else "redis+sentinel",
            "cluster": "rediss-cluster" if tls else "redis-cluster",
        }[self.kind]
        auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(str(n) for n in self.nodes)
        db = f"/{self.db}" if self.db else ""
        query: list[tuple[str, str]] = []
        if self.kind == "unix":
            location = quote(self.socket_path or "", safe="/")
            if self.db:
                query.append(("db", str(self.db)))
        elif self.kind == "sentinel":
            location = f"{hosts}/{quote(self.sentinel_name or '', safe='')}{db}"
            query += [(k, v) for k, v in (("sentinel_username", self.sentinel_username),
                                          ("sentinel_password", self.sentinel_password)) if v]
        else:
            location = hosts + db
            if self.cluster_tag:
                query.append(("hash_tag", self.cluster_tag))
        if self.tls is not None:
            t = self.tls
            query += [(k, v) for k, v in (("ssl_ca_certs", t.ca_file), ("ssl_certfile", t.cert_file),
                                          ("ssl_keyfile", t.key_file)) if v]
            if t.verify == "none":
                query.append(("ssl_cert_reqs", "none"))
            elif t.verify == "ca":
                query.append(("ssl_check_hostname", "false"))
        if self.connect_timeout_s != DEFAULT_CONNECT_TIMEOUT_S:
            query.append(("socket_connect_timeout", f"{self.connect_timeout_s:g}"))
        return f"{scheme}://{auth}{location}" + (f"?{urlencode(query)}" if query else "")

    def redacted(self) -> str:
        """The target as a URL for logs and messages: the user and password show as `***`, and
        so does the sentinels' password."""
        return redacted_url(self.url())

    # -- redis-py clients ----------------------------------------------------------------------

    def connection_kwargs(self, *, retry: Retry, client_name: str | None, decode_responses: bool) -> dict[str, Any]:
        """redis-py connection keywords shared by every kind.

        `socket_timeout=None`: a read must never time out, or the worker's blocking BZPOPMIN is
        cut and an idle worker goes deaf for seconds (docs/traps.md F1).
        """
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "db": self.db,
            "socket_timeout": None,
            "socket_connect_timeout": self.connect_timeout_s,
            "retry": retry,
            "health_check_interval": 0,
            "client_name": client_name,
            "decode_responses": decode_responses,
        }
        if self.kind != "unix":
            # TCP only: redis-py's unix socket connection refuses keepalive options.
            kwargs["socket_keepalive"] = True
        if self.tls is not None:
            kwargs.update(self.tls.redis_py_kwargs())
        return kwargs

    def redis_py_client(
        self,
        *,
        retry: Retry,
        client_name: str | None = None,
        decode_responses: bool = True,
        single_connection: bool = True,
    ) -> aioredis.Redis:
        """A redis-py asyncio client for this target; connecting is lazy.

        tcp/unix: a plain client. sentinel: a client whose connections ask the sentinels for the
        master on every connect (redis-py's SentinelConnectionPool; a switch is logged). cluster:
        a plain client whose connections go to the node serving the slot of `{cluster_tag}`,
        looked up on every connect; a MOVED reply drops the connection so the next command finds
        the new owner. The cluster client is deliberately not redis-py's RedisCluster: every key
        twenty-jobs touches carries the tag, so one node answers all of it, and Lua scripts,
        MULTI and SCAN work exactly as on a single server.
        """
        kwargs = self.connection_kwargs(retry=retry, client_name=client_name, decode_responses=decode_responses)
        pool: ConnectionPool
        if self.kind == "tcp":
            node = self.nodes[0]
            return aioredis.Redis(host=node.host, port=node.port, single_connection_client=single_connection, **kwargs)
        if self.kind == "unix":
            return aioredis.Redis(
                unix_socket_path=self.socket_path, single_connection_client=single_connection, **kwargs
            )
        ssl = bool(kwargs.pop("ssl", False))
        if self.kind == "sentinel":
            pool = sentinel.master_pool(self, ssl=ssl, connection_kwargs=kwargs)
        else:
            connection_class: type[Connection] = (
                cluster.SlotOwnerSSLConnection if ssl else cluster.SlotOwnerConnection
            )
            pool = ConnectionPool(
                connection_class=connection_class,
                locate_owner=self.slot_owner,
                host=self.nodes[0].host,
                port=self.nodes[0].port,
                **kwargs,
            )
        client = aioredis.Redis(connection_pool=pool, single_connection_client=single_connection)
        # The client owns the pool it was given, so closing the client closes the pool.
        client.auto_close_connection_pool = True
        return client

    # -- the pipelined connection's opener ----------------------------------------------------

    async def open_transport(
        self, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Open a fresh connection running `protocol_factory()`: TCP, TLS with this target's
        options (the same checks as redis-py's), or the unix socket, within the connect timeout.
        This is the *opener* of the worker's pipelined connection (connection/pipelined.py),
        which does the handshake itself (AUTH, SELECT, CLIENT SETNAME) and sets TCP keepalive.

        sentinel: asks the sentinels for the current master on every call, so a reconnect after
        a failover reaches the new master (and the switch is logged once per process). cluster:
        asks the seed nodes which node serves the slot of `{cluster_tag}` on every call; a MOVED
        reply on the connection is the caller's to handle (by reconnecting).
        Raises OSError (ConnectionRefusedError, TimeoutError, ssl.SSLError) or a redis-py
        ConnectionError (no master, no cluster node) when no connection can be made.
        """
        loop = asyncio.get_running_loop()
        if self.kind == "unix":
            assert self.socket_path is not None
            return await asyncio.wait_for(
                loop.create_unix_connection(protocol_factory, self.socket_path), self.connect_timeout_s
            )
        if self.kind == "sentinel":
            node = await sentinel.current_master(self)
        elif self.kind == "cluster":
            node = await self.slot_owner()
        else:
            node = self.nodes[0]
        ssl_context = self.tls.context() if self.tls is not None else None
        return await asyncio.wait_for(
            loop.create_connection(
                protocol_factory, node.host, node.port, ssl=ssl_context,
                server_hostname=node.host if ssl_context is not None else None,
            ),
            self.connect_timeout_s,
        )

    async def slot_owner(self) -> Endpoint:
        """The cluster node that serves the slot of this target's hash tag (cluster only)."""
        return await cluster.slot_owner(self)
