"""Redis connections for producers and workers.

Every client is built here so the two traps of the Python port are closed in one place:
* redis-py >= 8 defaults `socket_timeout` to 5 s, which cuts the worker's blocking BZPOPMIN and
  leaves an idle worker deaf for seconds (baseline.md F1). We pin redis<8 AND pass
  `socket_timeout=None` so a future upgrade cannot bring the trap back.
* reconnects are retried with a capped exponential backoff and logged, instead of redis-py's
  silent 20-try retry (bullmq-python.md §8.4).

The worker's command connection is a `PipelinedRedis`: the same redis.asyncio.Redis API (the
BullMQ port's Lua scripts, INFO, HGETALL...), but commands from concurrent jobs share the one
socket the way ioredis does for Node: each is written without waiting for the previous reply
(with many in flight, those issued in one event-loop turn go out in one write) and the replies
are matched to them in order. redis-py's single-connection client instead holds a lock for each
round trip, which serialises a worker's jobs on Redis latency (baseline.md: 0.12-0.43x Node's
throughput). The bench numbers are in benchmarks/ (`make bench`).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import ExponentialBackoff
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    DataError,
    InvalidResponse,
    NoScriptError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from twenty_jobs.connection.target import RedisTarget
from twenty_jobs.connection.url import parse_redis_url
from twenty_jobs.errors import RedisUnavailableError
from twenty_jobs.redaction import redacted_url, scrub, url_secrets
from twenty_jobs.wire.lua import LuaScript

log = logging.getLogger("twenty_jobs.redis")

T = TypeVar("T")

RETRYABLE_ERRORS: tuple[type[RedisError], ...] = (ConnectionError, TimeoutError, BusyLoadingError)
# Worker connections: retry forever, backing off from 50 ms up to 2 s so a restarted Redis is
# picked up within ~2 s. One-shot commands (CLI, producers): give up after ~1.5 s.
WORKER_BACKOFF_CAP_S = 2.0
WORKER_BACKOFF_BASE_S = 0.05
CLIENT_RETRIES = 3


class LoggedRetry(Retry):
    """redis-py's Retry, which logs the first failure of an outage and the recovery."""

    def __init__(self, backoff: ExponentialBackoff, retries: int, what: str, *, quiet: bool = False) -> None:
        super().__init__(backoff, retries, RETRYABLE_ERRORS)
        self.what = what
        # One-shot clients (CLI, producers) report the final error themselves; no log noise.
        self.quiet = quiet

    async def call_with_retry(  # type: ignore[override]
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0

        async def on_fail(error: Exception, count: int | None = None) -> Any:
            nonlocal failures
            failures += 1
            if self.quiet:
                pass
            elif failures == 1:
                log.warning("Redis connection lost (%s): %s; retrying with backoff", self.what, error)
            elif failures % 20 == 0:
                log.warning("Redis still unreachable (%s) after %d attempts: %s", self.what, failures, error)
            if with_failure_count:
                return await fail(error, count)
            return await fail(error)

        result = await super().call_with_retry(
            do, on_fail, is_retryable=is_retryable, with_failure_count=with_failure_count
        )
        if failures and not self.quiet:
            log.warning("Redis connection restored (%s) after %d failed attempts", self.what, failures)
        return result


def as_target(target: RedisTarget | str) -> RedisTarget:
    """`target` itself, or the target a URL describes (what the URL says but twenty-jobs does not
    use is logged once per process; settings report it for URLs from the environment)."""
    if isinstance(target, RedisTarget):
        return target
    parsed = parse_redis_url(target)
    for sentence in parsed.unused:
        if sentence not in _reported_unused:
            _reported_unused.add(sentence)
            log.warning("%s", sentence)
    return parsed.target()


_reported_unused: set[str] = set()


def make_client(
    target: RedisTarget | str,
    *,
    what: str,
    client_name: str | None = None,
    retry_forever: bool = False,
    decode_responses: bool = True,
    single_connection: bool = True,
    pipelined: bool = False,
) -> aioredis.Redis:
    """A redis.asyncio client for `target` (a RedisTarget, or a URL: connection/url.py).

    `single_connection=True` gives the client one dedicated socket, which the BullMQ port
    expects (its blocking BZPOPMIN must not share a socket with other commands).
    `client_name` is re-applied by redis-py after every reconnect.
    `pipelined=True` (with `retry_forever`; never for a connection that blocks) returns a
    `PipelinedRedis`, whose concurrent commands share the socket without waiting for each other.
    Sentinel and Cluster targets reconnect to wherever the master / the slot's node is now.
    """
    redis_target = as_target(target)
    if retry_forever:
        retry = LoggedRetry(ExponentialBackoff(cap=WORKER_BACKOFF_CAP_S, base=WORKER_BACKOFF_BASE_S), -1, what)
    else:
        retry = LoggedRetry(ExponentialBackoff(cap=0.5, base=0.1), CLIENT_RETRIES, what, quiet=True)
    if pipelined:
        if not (retry_forever and single_connection):
            raise ValueError("a pipelined client is a worker's single, retry-forever command connection")
        client = redis_target.redis_py_client(
            retry=retry, client_name=client_name, decode_responses=decode_responses, redis_class=PipelinedRedis
        )
        client.what = what
        return client
    return redis_target.redis_py_client(
        retry=retry, client_name=client_name, decode_responses=decode_responses, single_connection=single_connection
    )


# -- pipelining ------------------------------------------------------------------------------------

# hiredis returns this when the buffered bytes do not hold a whole reply yet.
_NOT_ENOUGH_DATA = object()


class _ReplyProtocol(asyncio.Protocol):
    """Receives the replies of a pipelined connection and hands each to the oldest waiter.

    It replaces the asyncio stream protocol redis-py connected with (after redis-py's own
    handshake: AUTH, SELECT, client name, TLS), and forwards the end of the connection to it so
    redis-py's `disconnect()` completes as usual.
    """

    def __init__(self, pipe: _Pipe, inner: asyncio.BaseProtocol, reader: Any) -> None:
        self.pipe = pipe
        self.inner = inner
        self.reader = reader

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.pipe.waiters
        while waiters:
            fut, decode = waiters[0]
            reply = reader.gets(decode)
            if reply is _NOT_ENOUGH_DATA:
                return
            waiters.popleft()
            if fut.done():  # the caller was cancelled; the reply is dropped
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.lost(self, exc)
        if isinstance(self.inner, asyncio.Protocol):
            self.inner.connection_lost(exc)


# A command is written at once while at most this many are in flight (Redis would otherwise
# sit idle while we build the next ones); deeper than that, commands issued in one event-loop
# turn are written together (fewer syscalls on both sides). Measured on `make bench` drains:
# writing only when nothing is in flight keeps the worker and Redis in lockstep (0.7x Node's
# throughput at concurrency 10); always writing at once costs ~30% more worker CPU at 100.
EAGER_WRITE_DEPTH = 8


class _Pipe:
    """The pipelined socket of one PipelinedRedis: a FIFO of reply waiters and a write buffer
    flushed once per event-loop turn."""

    def __init__(self, client: PipelinedRedis) -> None:
        self.client = client
        self.waiters: collections.deque[tuple[asyncio.Future[Any], bool]] = collections.deque()
        self.wbuf: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.protocol: _ReplyProtocol | None = None
        self.flush_scheduled = False
        self.connecting: asyncio.Future[None] | None = None
        self.closing = False
        self.was_connected = False
        self.loop = asyncio.get_running_loop()

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def send(self, packed: bytes, decode: bool) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        self.waiters.append((fut, decode))
        if self.transport is not None and not self.wbuf and len(self.waiters) <= EAGER_WRITE_DEPTH:
            # Few commands in flight: write now, so Redis works while we prepare the next ones.
            self.transport.write(packed)
            return fut
        self.wbuf.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.flush_scheduled = False
        wbuf = self.wbuf
        if not wbuf or self.transport is None:
            return
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self.transport.write(data)

    async def ensure_connected(self) -> None:
        if self.closing:
            raise ConnectionError("the client is closed")
        if self.connecting is None or self.connecting.done():
            self.connecting = asyncio.ensure_future(self._connect())
        await asyncio.shield(self.connecting)

    async def _connect(self) -> None:
        client = self.client
        if client.connection is None:
            await aioredis.Redis.initialize(client)
        conn = client.connection
        assert conn is not None
        if self.was_connected:
            # Forget the lost stream so redis-py opens a fresh socket.
            await conn.disconnect(nowait=True)
        # Retried forever, with logging, by the connection's LoggedRetry.
        await conn.connect()  # type: ignore[no-untyped-call]
        writer = conn._writer
        if writer is None:
            raise ConnectionError("redis-py did not open a stream")
        transport = writer.transport
        kwargs: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": BaseParser.parse_error,
            "notEnoughData": _NOT_ENOUGH_DATA,
        }
        if conn.encoder.decode_responses:
            kwargs["encoding"] = conn.encoder.encoding
            kwargs["errors"] = conn.encoder.encoding_errors
        protocol = _ReplyProtocol(self, transport.get_protocol(), hiredis.Reader(**kwargs))
        transport.set_protocol(protocol)
        # Anything redis-py read past the handshake (nothing in practice) is ours.
        buffered = getattr(conn._reader, "_buffer", None)
        self.transport, self.protocol = transport, protocol  # type: ignore[assignment]
        if self.was_connected:
            log.warning("Redis connection restored (%s)", self.client.what)
        self.was_connected = True
        if buffered:
            protocol.data_received(bytes(buffered))
            buffered.clear()
        if self.wbuf and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def lost(self, protocol: _ReplyProtocol, exc: Exception | None) -> None:
        if protocol is not self.protocol:
            return
        self.transport = None
        self.protocol = None
        self.wbuf.clear()
        waiters, self.waiters = self.waiters, collections.deque()
        error = ConnectionError(f"Connection to Redis lost ({exc or 'closed by server'})")
        for fut, _ in waiters:
            if not fut.done():
                fut.set_exception(error)
        if not self.closing:
            log.warning("Redis connection lost (%s): %s; reconnecting", self.client.what, exc or "closed by server")

    def close(self) -> None:
        self.closing = True
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()


class PipelinedRedis(aioredis.Redis):
    """redis.asyncio.Redis on one socket whose concurrent commands are pipelined (see the module
    docstring). Replies go through redis-py's response callbacks, so every command behaves as
    on a plain client; connection errors are retried forever (the worker's policy), with the
    outage logged. Only for connections that never block (not the worker's BZPOPMIN one)."""

    what = "commands"
    _pipe: _Pipe | None = None

    async def _roundtrip(self, args: tuple[Any, ...], decode: bool = True) -> Any:
        """Send one command and return its raw reply; connection errors are retried forever
        (after a reconnect), as the worker's LoggedRetry does for plain clients."""
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = _Pipe(self)
        try:
            packed = hiredis.pack_command(args)
        except TypeError as exc:
            raise DataError(f"{exc} (command {args[0]})") from None
        failures = 0
        while True:
            if pipe.transport is None:
                await pipe.ensure_connected()
            try:
                return await pipe.send(packed, decode)
            except RETRYABLE_ERRORS as exc:
                if pipe.closing:
                    raise
                failures += 1
                if isinstance(exc, BusyLoadingError):
                    await asyncio.sleep(min(WORKER_BACKOFF_CAP_S, WORKER_BACKOFF_BASE_S * 2**failures))

    async def call_script(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """`script(keys, args)` for a registered AsyncScript (the port's Lua), without redis-py's
        per-call layers: EVALSHA, and on NOSCRIPT (a restarted or flushed Redis) SCRIPT LOAD and
        again, exactly as AsyncScript.__call__ does."""
        try:
            return await self._roundtrip(("EVALSHA", script.sha, len(keys), *keys, *args))
        except NoScriptError:
            script.sha = await self.script_load(script.script)
            return await self._roundtrip(("EVALSHA", script.sha, len(keys), *keys, *args))

    async def call(self, *args: Any) -> Any:
        """`CommandConnection.call` (connection/protocol.py): the raw reply of one command."""
        return await self._roundtrip(args)

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        """`CommandConnection.run_script` (connection/protocol.py). NOTE: this connection still
        re-sends after a dropped reply whatever `idempotent` says."""
        try:
            return await self._roundtrip(("EVALSHA", lua.sha, len(keys), *keys, *args))
        except NoScriptError:
            await self._roundtrip(("SCRIPT", "LOAD", lua.text))
            return await self._roundtrip(("EVALSHA", lua.sha, len(keys), *keys, *args))

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command_name = args[0]
        if isinstance(command_name, str) and " " in command_name:  # "CLIENT SETNAME", "SCRIPT LOAD"
            args = (*command_name.split(), *args[1:])
        try:
            response = await self._roundtrip(args, NEVER_DECODE not in options)
        except ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(command_name)
        if callback is None:
            return response
        retval = callback(response, **options)
        return await retval if inspect.isawaitable(retval) else retval

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._pipe is not None:
            self._pipe.close()
        await super().aclose(close_connection_pool)


# What to do when no Redis answers at all (the README's first command needs one).
START_REDIS_HINT = (
    "Start one (`make services` in a twenty-jobs checkout, or `redis-server --daemonize yes`) or point "
    "REDIS_URL (or --redis-url) at yours."
)


async def ping_or_raise(client: aioredis.Redis, target: RedisTarget | str) -> None:
    """Fail with one clear line (no password, whatever the URL form) when Redis cannot be used."""
    try:
        await client.ping()  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise RedisUnavailableError(describe_failure(target, exc)) from None


def describe_failure(target: RedisTarget | str, exc: BaseException) -> str:
    """One line saying why `target` could not be used, and what to check."""
    try:
        redis_target: RedisTarget | None = as_target(target)
    except ValueError:
        redis_target = None
    where = redis_target.redacted() if redis_target else redacted_url(str(target))
    secrets = [redis_target.password, redis_target.sentinel_password] if redis_target else []
    if not isinstance(target, RedisTarget):
        secrets += url_secrets(target)
    reason = scrub(" ".join(str(exc).split()).rstrip("."), secrets) or type(exc).__name__
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in reason or "NOAUTH" in reason:
        return (f"Redis at {where} refused the credentials ({reason}): check the user name and password "
                "(REDIS_PASSWORD / REDIS_USERNAME, or the URL)")
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return (f"cannot reach Redis at {where}: the server's TLS certificate is not trusted ({reason}); "
                "check REDIS_TLS_CA (ssl_ca_certs in the URL) and REDIS_TLS_VERIFY")
    if isinstance(exc, MasterNotFoundError):
        return f"cannot reach Redis at {where}: {reason}"
    return f"cannot reach Redis at {where}: {reason}. {START_REDIS_HINT}"


async def redis_server_info(client: aioredis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = await client.info()
    return info
