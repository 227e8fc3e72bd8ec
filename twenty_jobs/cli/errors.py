"""The one place where the CLI turns an error into `twenty-jobs: error: <one line>` and an exit code.

Exit codes: 2 for bad arguments or configuration (the user fixes the command line or the
environment), 1 for runtime failures (Redis unreachable, unhealthy, a Redis error). No traceback
ever reaches the user for these; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError
from redis.exceptions import RedisError

from twenty_jobs.errors import ConfigError, RedisRefusedError, RedisUnavailableError, TwentyJobsError
from twenty_jobs.settings import Settings

EXIT_RUNTIME = 1
EXIT_USAGE = 2

T = TypeVar("T")

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Said when a Redis on this machine does not answer: a newcomer's first run (README "Quick start").
START_LOCAL_REDIS = (
    " To start one on 127.0.0.1:6379: `make services` in a twenty-jobs checkout, "
    "or `redis-server --daemonize yes`."
)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"twenty-jobs: error: {message}", err=True)
    raise typer.Exit(code)


def error_line(exc: BaseException, *, redis_url: str | None = None) -> tuple[str, int] | None:
    """The one line and exit code for an error the user can act on; None for a bug."""
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return (f"{where}: {first['msg']}" if where else first["msg"]), EXIT_USAGE
    if isinstance(exc, RedisUnavailableError):
        message = str(exc)
        if redis_url is not None and is_loopback(redis_url) and not isinstance(exc, RedisRefusedError):
            message = with_local_redis_hint(message)
        return message, EXIT_RUNTIME
    if isinstance(exc, TwentyJobsError):
        return str(exc), EXIT_RUNTIME
    if isinstance(exc, RedisError):
        # After connecting: an ACL refusing a command, Redis going away mid-command.
        return f"Redis error: {str(exc).rstrip('.')}", EXIT_RUNTIME
    return None


def with_local_redis_hint(message: str) -> str:
    return message.rstrip(". ") + "." + START_LOCAL_REDIS


def run(coro: Coroutine[Any, Any, T], *, settings: Settings | None = None) -> T:
    """Run a command's coroutine; the errors above become one line and their exit code. With the
    command's settings, a local Redis that does not answer comes with how to start one. (Fix hints
    that quote a command already carry the --prefix in use: twenty_jobs/ops/findings.py, command.)"""
    try:
        return asyncio.run(coro)
    except (TwentyJobsError, ValidationError, RedisError) as exc:
        line = error_line(exc, redis_url=settings.queue_redis_url if settings else None)
        if line is None:
            raise
        message, code = line
        fail(message, code)


def is_loopback(url: str) -> bool:
    """True when the Redis URL points at this machine (where starting a Redis is the fix)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host in _LOOPBACK_HOSTS
