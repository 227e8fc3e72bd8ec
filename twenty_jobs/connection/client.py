"""Redis connections for producers and workers.

Every client is built here so the two traps of the Python port are closed in one place
(docs/connections.md):
* redis-py >= 8 defaults `socket_timeout` to 5 s, which equals BullMQ's drainDelay and cuts the
  worker's blocking BZPOPMIN: an idle worker then sits in redis-py's silent retry backoff and
  picks up a new job up to ~20 s late. Every client here passes `socket_timeout=None`, so redis-py
  7.x and 8.x behave the same.
* reconnects are retried with a capped exponential backoff and logged, instead of redis-py's
  silent 20-try retry.

The worker's command connection is not a redis-py client: `make_command_connection` returns a
`PipelinedConnection` (connection/pipelined.py), whose concurrent commands share one socket.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, RedisError, TimeoutError

from twenty_jobs.connection.pipelined import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CONNECT_TIMEOUT_S,
    Opener,
    PipelinedConnection,
    tcp_opener,
    unix_opener,
)
from twenty_jobs.errors import RedisUnavailableError
from twenty_jobs.settings import redacted_url

log = logging.getLogger("twenty_jobs.redis")

T = TypeVar("T")

RETRYABLE_ERRORS: tuple[type[RedisError], ...] = (ConnectionError, TimeoutError, BusyLoadingError)
# Worker connections retry forever with the pipelined connection's backoff (50 ms doubling up to
# 2 s). One-shot commands (CLI, producers): give up after ~1.5 s.
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


def make_client(
    url: str,
    *,
    what: str,
    client_name: str | None = None,
    retry_forever: bool = False,
    decode_responses: bool = True,
    single_connection: bool = True,
) -> aioredis.Redis:
    """A redis.asyncio client for `url`.

    `single_connection=True` gives the client one dedicated socket, which the BullMQ port
    expects (its blocking BZPOPMIN must not share a socket with other commands).
    `client_name` is re-applied by redis-py after every reconnect.
    """
    if retry_forever:
        retry = LoggedRetry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), -1, what)
    else:
        retry = LoggedRetry(ExponentialBackoff(cap=0.5, base=0.1), CLIENT_RETRIES, what, quiet=True)
    kwargs: dict[str, Any] = {
        "decode_responses": decode_responses,
        # redis-py 8 defaults to 5 s, which cuts the blocking BZPOPMIN (module docstring).
        "socket_timeout": None,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "retry": retry,
        "single_connection_client": single_connection,
        "health_check_interval": 0,
    }
    if client_name:
        kwargs["client_name"] = client_name
    return aioredis.Redis.from_url(url, **kwargs)


def make_command_connection(url: str, *, what: str, client_name: str | None = None) -> PipelinedConnection:
    """The worker's pipelined command connection to `url` (redis://, rediss://, unix://), with the
    URL's credentials and db; it reconnects forever, logging outages under `what`."""
    options: dict[str, Any] = dict(parse_url(url))
    password = options.get("password")
    return PipelinedConnection(
        _opener(url, options),
        username=options.get("username") if password is not None else None,
        password=password,
        db=int(options.get("db") or 0),
        client_name=client_name,
        what=what,
    )


# `ssl_cert_reqs` values of a rediss:// URL, as redis-py reads them.
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _opener(url: str, options: dict[str, Any]) -> Opener:
    if "path" in options:
        return unix_opener(options["path"])
    context: ssl.SSLContext | None = None
    if url.lower().startswith("rediss://"):
        context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        cert_reqs = _CERT_REQS.get(str(options.get("ssl_cert_reqs", "required")).lower(), ssl.CERT_REQUIRED)
        if cert_reqs != ssl.CERT_REQUIRED or str(options.get("ssl_check_hostname", "true")).lower() == "false":
            context.check_hostname = False
        context.verify_mode = cert_reqs
        if options.get("ssl_certfile"):
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return tcp_opener(options.get("host", "localhost"), int(options.get("port") or 6379), ssl=context)


async def ping_or_raise(client: aioredis.Redis, url: str) -> None:
    """Fail with one clear line when Redis cannot be reached."""
    try:
        await client.ping()  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {redacted_url(url)}: {str(exc).rstrip('.')}. Check REDIS_QUEUE_URL/REDIS_URL "
            "(or --redis-url) and that Redis is running."
        ) from None
