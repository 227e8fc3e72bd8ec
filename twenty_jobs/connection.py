"""Redis connections for producers and workers.

Every client is built here so the two traps of the Python port are closed in one place:
* redis-py >= 8 defaults `socket_timeout` to 5 s, which cuts the worker's blocking BZPOPMIN and
  leaves an idle worker deaf for seconds (baseline.md F1). We pin redis<8 AND pass
  `socket_timeout=None` so a future upgrade cannot bring the trap back.
* reconnects are retried with a capped exponential backoff and logged, instead of redis-py's
  silent 20-try retry (bullmq-python.md §8.4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, RedisError, TimeoutError

from twenty_jobs.errors import RedisUnavailableError
from twenty_jobs.settings import redacted_url

log = logging.getLogger("twenty_jobs.redis")

T = TypeVar("T")

RETRYABLE_ERRORS: tuple[type[RedisError], ...] = (ConnectionError, TimeoutError, BusyLoadingError)
# How long a connect attempt may take before it counts as failed.
CONNECT_TIMEOUT_S = 5.0
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
        retry = LoggedRetry(ExponentialBackoff(cap=WORKER_BACKOFF_CAP_S, base=WORKER_BACKOFF_BASE_S), -1, what)
    else:
        retry = LoggedRetry(ExponentialBackoff(cap=0.5, base=0.1), CLIENT_RETRIES, what, quiet=True)
    kwargs: dict[str, Any] = {
        "decode_responses": decode_responses,
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


async def ping_or_raise(client: aioredis.Redis, url: str) -> None:
    """Fail with one clear line when Redis cannot be reached."""
    try:
        await client.ping()  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {redacted_url(url)}: {str(exc).rstrip('.')}. Check REDIS_QUEUE_URL/REDIS_URL "
            "(or --redis-url) and that Redis is running."
        ) from None


async def redis_server_info(client: aioredis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = await client.info()
    return info
