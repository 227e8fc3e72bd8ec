"""The worker's command connection: one socket on which the commands of many concurrent job slots
are pipelined, on public APIs only (docs/connections.md, "Pipelined command connection").

* Transport: an asyncio `Protocol` on the transport an *opener* gives (`loop.create_connection`,
  `loop.create_unix_connection`, TLS through an `ssl.SSLContext`); `tcp_opener` and `unix_opener`
  below are the plain ones, settings (URL, Sentinel...) supply others.
* Replies: hiredis's public `Reader` (RESP2), strings decoded as UTF-8 with `surrogateescape`, so
  invalid bytes in any reply reach the caller as lone surrogates instead of raising inside the
  protocol (which dropped the connection and every other reply in flight) and go back to Redis
  as the same bytes when sent as arguments.
* Handshake of its own, on every (re)connect: AUTH, SELECT, CLIENT SETNAME.
* Pipelining: each command is written without waiting for the previous reply, and replies are
  matched to commands in order (what ioredis does for Node). See EAGER_WRITE_DEPTH for when a
  command is written at once and when with the others of its event-loop turn.
* Reconnects forever with a capped exponential backoff, logging the first failure and the
  recovery. It knows which replies a dropped connection took with it: those commands are sent
  again only when they are safe to run twice (reads, `run_script(..., idempotent=True)`); the
  others fail with `ReplyLostError`. Commands not yet written wait for the new connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    DataError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from twenty_jobs.connection.protocol import ReplyLostError
from twenty_jobs.wire.lua import LuaScript

log = logging.getLogger("twenty_jobs.redis")

ProtocolFactory = Callable[[], asyncio.Protocol]
# Opens a connection and runs `protocol_factory()` on it: the signature of
# `functools.partial(loop.create_connection, host=..., port=..., ssl=...)`.
Opener = Callable[[ProtocolFactory], Awaitable[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]]

# A command is written at once while at most this many are in flight (Redis would otherwise sit
# idle while we build the next ones); deeper than that, the commands issued in one event-loop turn
# are written together (fewer syscalls on both sides). Measured on `make bench` drains: writing
# only when nothing is in flight keeps the worker and Redis in lockstep (0.7x Node's throughput at
# concurrency 10); writing every command at once costs ~30% more worker CPU at concurrency 100.
EAGER_WRITE_DEPTH = 8
# How long opening a connection plus its handshake may take before the attempt counts as failed.
CONNECT_TIMEOUT_S = 5.0
# Reconnect backoff: 50 ms doubling up to 2 s, so a restarted Redis is picked up within ~2 s.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
# While Redis stays unreachable, one more log line every this many failed attempts.
LOG_EVERY_FAILURES = 20

# Commands that only read: a reply lost to a dropped connection is fetched again by sending them
# again. Anything else (writes, EVALSHA through `call`) fails with ReplyLostError instead.
READ_ONLY_COMMANDS = frozenset(
    {
        "DBSIZE", "ECHO", "EXISTS", "GET", "HEXISTS", "HGET", "HGETALL", "HKEYS", "HLEN", "HMGET",
        "HSCAN", "HSTRLEN", "HVALS", "INFO", "LINDEX", "LLEN", "LPOS", "LRANGE", "MGET", "PING",
        "PTTL", "SCAN", "SCARD", "SISMEMBER", "SMEMBERS", "SMISMEMBER", "SSCAN", "STRLEN", "TIME",
        "TTL", "TYPE", "XLEN", "XRANGE", "XREVRANGE", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZMSCORE",
        "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANK", "ZREVRANGE", "ZREVRANGEBYSCORE",
        "ZREVRANK", "ZSCAN", "ZSCORE",
    }
)

# Error replies as the exceptions redis-py raises for them, so callers catch one set of classes
# whichever client they hold. LOADING (a restarted Redis reading its data) and NOSCRIPT (scripts
# flushed) mean the command did not run, so they are retried here.
_ERRORS_BY_CODE: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError,
    "LOADING": BusyLoadingError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
}


def _reply_error(message: str) -> Exception:
    return _ERRORS_BY_CODE.get(message.split(" ", 1)[0], ResponseError)(message)


# hiredis's stub types the argument as a 1-tuple; it takes any number of arguments.
_pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command  # type: ignore[assignment]

# hiredis returns this when the bytes fed so far do not hold a whole reply yet.
_NOT_ENOUGH_DATA = object()

# One command: its reply future, its bytes (kept to send it again) and whether it may run twice.
_Entry = tuple["asyncio.Future[Any]", bytes, bool]


def _pack(args: tuple[Any, ...]) -> bytes:
    """RESP bytes of one command. Strings are UTF-8; lone surrogates (a reply's invalid bytes,
    decoded with surrogateescape) become those bytes again, so e.g. a job id read with invalid
    UTF-8 names the same key when it is sent back."""
    try:
        return _pack_command(args)
    except UnicodeEncodeError:
        return _pack_command(
            tuple(a.encode("utf-8", "surrogateescape") if isinstance(a, str) else a for a in args)
        )
    except TypeError as exc:
        raise DataError(f"cannot send {args[0]!r}: {exc}") from None


def _backoff_s(failures: int) -> float:
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(failures, 16)))


def tcp_opener(host: str, port: int = 6379, ssl: ssl_module.SSLContext | None = None) -> Opener:
    """Connect over TCP, with TLS when `ssl` is given (the certificate is checked against `host`
    as the context says)."""

    async def open_tcp(protocol_factory: ProtocolFactory) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        loop = asyncio.get_running_loop()
        return await loop.create_connection(protocol_factory, host, port, ssl=ssl)

    return open_tcp


def unix_opener(path: str) -> Opener:
    """Connect to a Unix socket."""

    async def open_unix(protocol_factory: ProtocolFactory) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        loop = asyncio.get_running_loop()
        return await loop.create_unix_connection(protocol_factory, path)

    return open_unix


class _ReplyProtocol(asyncio.Protocol):
    """One socket of a PipelinedConnection: feeds what arrives to hiredis and hands each reply to
    the oldest waiting command."""

    def __init__(self, connection: PipelinedConnection) -> None:
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(
            encoding="utf-8",
            errors="surrogateescape",
            notEnoughData=_NOT_ENOUGH_DATA,
            replyError=_reply_error,
        )
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection._protocol is not self:  # an abandoned socket
            return
        reader = self.reader
        reader.feed(data)
        waiters = connection._waiters
        try:
            # RESP2 has no unsolicited replies: every reply answers the oldest waiting command.
            while waiters:
                reply = reader.gets()
                if reply is _NOT_ENOUGH_DATA:
                    return
                fut = waiters.popleft()[0]
                if fut.done():  # the caller was cancelled; its reply is dropped
                    continue
                if isinstance(reply, Exception):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            # The stream cannot be read past this point: start over on a new socket.
            log.error("Redis sent an unreadable reply (%s): %s; reconnecting", connection.what, exc)
            connection._drop(self, exc)
            assert self.transport is not None
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection._drop(self, exc or RedisConnectionError("closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)


class PipelinedConnection:
    """The `CommandConnection` (connection/protocol.py) of a worker: one socket, concurrent
    commands pipelined on it, raw replies, reconnects forever (see the module docstring).

    `opener` opens the socket (`tcp_opener`, `unix_opener`, or one built from the settings);
    `username`/`password` (AUTH), `db` (SELECT) and `client_name` (CLIENT SETNAME) are applied on
    every connect; `what` names the connection in log lines.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        client_name: str | None = None,
        what: str = "commands",
    ) -> None:
        self.what = what
        self._opener = opener
        self._handshake: list[tuple[Any, ...]] = []
        if password is not None:
            self._handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._handshake.append(("SELECT", db))
        if client_name:
            self._handshake.append(("CLIENT", "SETNAME", client_name))
        # Every command sent and not yet answered, oldest first. The last len(_wbuf) of them are
        # not written yet: _wbuf holds their bytes.
        self._waiters: collections.deque[_Entry] = collections.deque()
        self._wbuf: list[bytes] = []
        self._flush_scheduled = False
        # The socket being set up or in use, and its transport once the handshake is done.
        self._protocol: _ReplyProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._connector: asyncio.Task[None] | None = None
        self._lost = False  # a connection was lost and the next one is a recovery
        # Why the last connection attempt gave up (a refused handshake, or a defect).
        self._connect_error: Exception | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the CommandConnection protocol --------------------------------------------------------

    async def call(self, *args: str | bytes | int | float) -> Any:
        """Send one command and return its raw reply (see `CommandConnection.call`)."""
        name = args[0]
        command = (name.decode() if isinstance(name, bytes) else str(name)).upper()
        return await self._roundtrip(_pack(args), command in READ_ONLY_COMMANDS)

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        """EVALSHA `lua`; on NOSCRIPT (a restarted or flushed Redis), SCRIPT LOAD and again. A reply
        lost to a dropped connection: sent again after reconnecting when `idempotent`, else
        ReplyLostError."""
        if len(keys) != lua.number_of_keys:
            lua.check_keys(keys)  # raises, naming the script
        command = ("EVALSHA", lua.sha, len(keys), *keys, *args)
        try:
            packed = _pack_command(command)  # the hot path: _pack without a call layer
        except (UnicodeEncodeError, TypeError):
            packed = _pack(command)
        try:
            return await self._roundtrip(packed, idempotent)
        except NoScriptError:
            await self._roundtrip(_pack(("SCRIPT", "LOAD", lua.text)), True)
            return await self._roundtrip(packed, idempotent)

    async def aclose(self) -> None:
        """Close the socket; commands still waiting fail with a ConnectionError."""
        if self._closed:
            return
        self._closed = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        protocol = self._protocol
        self._fail_all(RedisConnectionError(f"the Redis connection ({self.what}) was closed"))
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed

    # -- more ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect now rather than on the first command (retrying until Redis answers). Raises
        what the handshake met when Redis refused it (a wrong password, a bad db or name)."""
        if self._closed:
            raise RedisConnectionError(f"the Redis connection ({self.what}) was closed")
        if self._transport is None:
            connector = self._ensure_connector()
            await asyncio.shield(connector)
            if self._connect_error is not None:
                raise self._connect_error

    @property
    def connected(self) -> bool:
        return self._transport is not None

    # -- sending -------------------------------------------------------------------------------

    async def _roundtrip(self, packed: bytes, idempotent: bool) -> Any:
        failures = 0
        while True:
            try:
                return await self._send(packed, idempotent)
            except BusyLoadingError:
                # LOADING: Redis restarted and is reading its data; the command did not run.
                failures += 1
                if failures == 1:
                    log.warning("Redis is loading its data (%s); waiting", self.what)
                await asyncio.sleep(_backoff_s(failures))

    def _send(self, packed: bytes, idempotent: bool) -> asyncio.Future[Any]:
        transport = self._transport
        if transport is None and self._closed:
            raise RedisConnectionError(f"the Redis connection ({self.what}) was closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut = loop.create_future()
        waiters = self._waiters
        waiters.append((fut, packed, idempotent))
        if transport is not None and not self._wbuf and len(waiters) <= EAGER_WRITE_DEPTH:
            # Few commands in flight: write now, so Redis works while we prepare the next ones.
            try:
                transport.write(packed)
            except RuntimeError:
                # uvloop: the socket has just closed and connection_lost is on its way; the command
                # stays unwritten and goes out on the next connection.
                self._wbuf.append(packed)
            return fut
        self._wbuf.append(packed)
        if transport is None:
            self._ensure_connector()  # it writes the buffer once connected
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        wbuf = self._wbuf
        if not wbuf or self._transport is None:
            return  # the connector writes what is left once it is connected
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        try:
            self._transport.write(data)
        except RuntimeError:
            return  # uvloop: closed, connection_lost is on its way (see _send)
        wbuf.clear()

    # -- connecting ----------------------------------------------------------------------------

    def _ensure_connector(self) -> asyncio.Task[None]:
        if self._connector is None or self._connector.done():
            self._connector = asyncio.ensure_future(self._connect_until_ready())
        return self._connector

    async def _connect_until_ready(self) -> None:
        failures = 0
        while not self._closed:
            try:
                await asyncio.wait_for(self._open_and_handshake(), CONNECT_TIMEOUT_S)
            except (ResponseError, AuthenticationError) as exc:
                # Redis refused the handshake (a wrong password, a db or a client name it rejects):
                # retrying cannot help, so the waiting commands get the error. The next command tries
                # again.
                self._abandon(exc)
                log.error("Redis refused the connection (%s): %s", self.what, exc)
                self._connect_error = exc
                self._fail_all(exc)
                return
            except (OSError, RedisConnectionError) as exc:
                # Unreachable, reset, timed out, or LOADING: try again.
                failures += 1
                self._abandon(exc)
                if failures == 1 and not self._lost:
                    log.warning("cannot reach Redis (%s): %s; retrying with backoff", self.what, _describe(exc))
                elif failures % LOG_EVERY_FAILURES == 0:
                    log.warning("Redis still unreachable (%s) after %d attempts: %s", self.what, failures,
                                _describe(exc))
                await asyncio.sleep(_backoff_s(failures))
                continue
            except Exception as exc:
                # A defect (here or in the opener): the waiting commands get it rather than hang.
                self._abandon(exc)
                log.exception("connecting to Redis failed (%s)", self.what)
                self._connect_error = exc
                self._fail_all(exc)
                return
            except BaseException as exc:  # cancelled (aclose)
                self._abandon(exc)
                raise
            self._connect_error = None
            if self._lost or failures:
                log.warning("Redis connection restored (%s) after %d failed attempt(s)", self.what, failures)
            self._lost = False
            return

    async def _open_and_handshake(self) -> None:
        protocol: _ReplyProtocol | None = None

        def make_protocol() -> _ReplyProtocol:
            nonlocal protocol
            protocol = _ReplyProtocol(self)
            return protocol

        await self._opener(make_protocol)
        if protocol is None or protocol.transport is None:
            raise TypeError("the opener did not connect the protocol it was given")
        transport = protocol.transport
        self._protocol = protocol
        _keep_alive(transport)
        # The handshake goes first on the socket: in front of the commands waiting to be written,
        # which are the whole queue while not connected (see _drop).
        replies = []
        if self._handshake:
            loop = asyncio.get_running_loop()
            entries = [(loop.create_future(), _pack(command), False) for command in self._handshake]
            self._waiters.extendleft(reversed(entries))
            transport.write(b"".join(entry[1] for entry in entries))
            replies = await asyncio.gather(*(entry[0] for entry in entries), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        self._transport = transport
        self._flush()

    def _abandon(self, exc: BaseException) -> None:
        """Give up the socket of a failed connection attempt (its commands are requeued at once,
        before its connection_lost comes)."""
        protocol = self._protocol
        if protocol is not None:
            self._drop(protocol, exc)
            if protocol.transport is not None:
                protocol.transport.abort()

    def _drop(self, protocol: _ReplyProtocol, exc: BaseException) -> None:
        """The socket of `protocol` is gone: commands whose replies it took are sent again when
        they may run twice and fail with ReplyLostError otherwise; all that is kept waits, unwritten,
        for the next connection."""
        if protocol is not self._protocol:
            return
        was_ready = self._transport is not None
        self._protocol = None
        self._transport = None
        written = len(self._waiters) - len(self._wbuf)
        kept: collections.deque[_Entry] = collections.deque()
        resent = lost = 0
        for index, entry in enumerate(self._waiters):
            fut = entry[0]
            if fut.done():
                continue
            if index < written:
                if not entry[2]:
                    fut.set_exception(
                        ReplyLostError(
                            f"the Redis connection ({self.what}) was lost after the command was sent and before "
                            "its reply came: it may or may not have run"
                        )
                    )
                    lost += 1
                    continue
                resent += 1
            kept.append(entry)
        self._waiters = kept
        self._wbuf = [entry[1] for entry in kept]
        if self._closed or not was_ready:
            return
        self._lost = True
        log.warning(
            "Redis connection lost (%s): %s; reconnecting (%d command(s) sent again, %d failed with their reply lost)",
            self.what, _describe(exc), resent, lost,
        )
        self._ensure_connector()

    def _fail_all(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, collections.deque()
        self._wbuf = []
        for fut, _, _ in waiters:
            if not fut.done():
                fut.set_exception(exc)


def _keep_alive(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive, so a peer that vanished without a FIN is noticed eventually."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
