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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, ConnectionError, RedisError, TimeoutError

from twenty_jobs.connection.pipelined import BACKOFF_BASE_S, BACKOFF_CAP_S, PipelinedConnection
from twenty_jobs.connection.target import RedisTarget
from twenty_jobs.connection.url import parse_redis_url
from twenty_jobs.errors import RedisRefusedError, RedisUnavailableError
from twenty_jobs.redaction import redacted_url, scrub, url_secrets

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


def as_target(target: RedisTarget | str) -> RedisTarget:
    """`target` itself, or the target a URL describes (connection/url.py). What such a URL says
    but twenty-jobs does not use is logged once per process; the settings report it for URLs
    from the environment."""
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
) -> aioredis.Redis:
    """A redis.asyncio client for `target` (a RedisTarget, or a URL).

    `single_connection=True` gives the client one dedicated socket, which the BullMQ port
    expects (its blocking BZPOPMIN must not share a socket with other commands).
    `client_name` is re-applied by redis-py after every reconnect. Sentinel and Cluster targets
    reconnect to wherever the master, or the slot's node, is now (connection/target.py).
    """
    if retry_forever:
        retry = LoggedRetry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), -1, what)
    else:
        retry = LoggedRetry(ExponentialBackoff(cap=0.5, base=0.1), CLIENT_RETRIES, what, quiet=True)
    return as_target(target).redis_py_client(
        retry=retry, client_name=client_name, decode_responses=decode_responses, single_connection=single_connection
    )


def make_command_connection(
    target: RedisTarget | str, *, what: str, client_name: str | None = None
) -> PipelinedConnection:
    """The worker's pipelined command connection to `target`, with its credentials and db; it
    reconnects forever (through `RedisTarget.open_transport`, so to the current Sentinel master
    or the slot's cluster node), logging outages under `what`."""
    redis_target = as_target(target)
    return PipelinedConnection(
        redis_target.open_transport,
        username=redis_target.username if redis_target.password is not None else None,
        password=redis_target.password,
        db=redis_target.db,
        client_name=client_name,
        what=what,
    )


async def ping_or_raise(client: aioredis.Redis, target: RedisTarget | str) -> None:
    """Fail with one clear line (no password, whatever the URL form) when Redis cannot be used."""
    try:
        await client.ping()  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise describe_failure(target, exc) from None


def describe_failure(target: RedisTarget | str, exc: BaseException) -> RedisUnavailableError:
    """The one-line error for `target` failing with `exc`: where (redacted), why (scrubbed of
    every form of the password), and what to check. A Redis that answered but refused us (the
    credentials, the TLS certificate) is a RedisRefusedError: starting a Redis is not the fix."""
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
        return RedisRefusedError(
            f"Redis at {where} refused the credentials ({reason}): check the user name and password "
            "(REDIS_PASSWORD / REDIS_USERNAME, or the URL)"
        )
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return RedisRefusedError(
            f"cannot reach Redis at {where}: the server's TLS certificate is not trusted ({reason}); "
            "check REDIS_TLS_CA (ssl_ca_certs in the URL) and REDIS_TLS_VERIFY"
        )
    if isinstance(exc, MasterNotFoundError):
        return RedisUnavailableError(f"cannot reach Redis at {where}: {reason}")
    return RedisUnavailableError(
        f"cannot reach Redis at {where}: {reason}. Check the Redis settings (REDIS_QUEUE_URL/REDIS_URL, "
        "--redis-url, or the others in the README's 'Connecting to Redis') and that Redis is running."
    )
