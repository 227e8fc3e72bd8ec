"""What every command needs before it does its work: settings from flags and environment, the
handler modules, a Redis connection, and the queue names checked by the one rule."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import typer

from twenty_jobs.cli.errors import fail
from twenty_jobs.connection.client import make_client, ping_or_raise
from twenty_jobs.errors import ConfigError
from twenty_jobs.jobs import BUILTIN_JOB_MODULES
from twenty_jobs.ops.snapshot import queue_exists
from twenty_jobs.settings import Settings, load_settings
from twenty_jobs.twenty.queues import check_queue_name
from twenty_jobs.wire.names import prefix_problem


def settings_from(redis_url: str | None, prefix: str | None) -> Settings:
    """Settings from the environment, with `--redis-url` and `--prefix` taking precedence. Redis
    settings that are set but not used are said on stderr, one warning line each."""
    if prefix is not None and (problem := prefix_problem(prefix)) is not None:
        fail(f"--prefix: {problem}")
    try:
        settings = load_settings(redis_url_option=redis_url, TWENTY_JOBS_PREFIX=prefix)
    except ConfigError as exc:
        fail(str(exc))
    for sentence in settings.unused_settings:
        typer.echo(f"twenty-jobs: warning: {sentence}", err=True)
    return settings


def import_modules(modules: Iterable[str], builtin: bool) -> None:
    """Import the handler modules (the ported Twenty jobs first when `builtin`).

    The current directory comes first on sys.path, as with `python -m` and celery: `--import
    my_jobs` finds ./my_jobs.py. The `twenty-jobs` script alone would not look there."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in [*(BUILTIN_JOB_MODULES if builtin else ()), *modules]:
        try:
            importlib.import_module(module)
        except ConfigError:
            raise
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(f"{exc.name}.")):
                fail(
                    f"cannot import handler module '{module}': no such module in {cwd} or on PYTHONPATH "
                    "(give the module name, e.g. my_jobs for ./my_jobs.py)"
                )
            fail(f"cannot import handler module '{module}': {exc}")
        except Exception as exc:
            fail(f"cannot import handler module '{module}': {type(exc).__name__}: {exc}")


@asynccontextmanager
async def connect(settings: Settings, what: str = "twenty-jobs") -> AsyncIterator[aioredis.Redis]:
    """A client to the queue Redis, answering PING, closed on exit."""
    client = make_client(settings.queue_redis_url, what=what)
    try:
        await ping_or_raise(client, settings.queue_redis_url)
        yield client
    finally:
        await client.aclose()


async def check_queues(
    client: aioredis.Redis, prefix: str, names: Iterable[str], *, custom: bool
) -> None:
    """The queue-name rule for commands that talk to Redis: besides Twenty's queues, any queue
    that exists under the prefix is accepted (another application's, or one made earlier)."""
    for name in names:
        exists = not custom and await queue_exists(client, prefix, name)
        check_queue_name(
            name, accepted=(name,) if exists else (), allow_custom=custom, how_to_allow="pass --custom-queue"
        )
