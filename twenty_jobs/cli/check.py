"""`twenty-jobs check`: exit 0 when every queue is being worked, else 1 with one line per problem."""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated

import redis.asyncio as aioredis
import typer
from redis.exceptions import RedisError

from twenty_jobs.cli.context import check_queues, settings_from
from twenty_jobs.cli.errors import is_loopback, run, with_local_redis_hint
from twenty_jobs.cli.options import MAX_SECONDS, CustomQueueOpt, JsonOpt, PrefixOpt, RedisUrlOpt, finite
from twenty_jobs.cli.output import carry_prefix, print_json
from twenty_jobs.connection.client import make_client
from twenty_jobs.observability.health import (
    DEFAULT_STUCK_AFTER_S,
    Finding,
    HealthReport,
    evaluate_health,
    summary_line,
    unreachable_report,
)
from twenty_jobs.ops.snapshot import discover_queues, ping
from twenty_jobs.ops.status import NOTHING_UNDER_PREFIX


def check(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", metavar="QUEUE",
            help="A queue that must have a live worker (repeatable). Default: every queue with a heartbeat.",
        ),
    ] = None,
    this_host: Annotated[
        bool, typer.Option("--this-host", help="Only judge the workers running on this host (container healthcheck).")
    ] = False,
    stuck_after: Annotated[
        float,
        typer.Option(
            "--stuck-after", metavar="SECONDS", min=1, max=MAX_SECONDS, callback=finite,
            help="Seconds a queue may have jobs ready with none finishing.",
        ),
    ] = DEFAULT_STUCK_AFTER_S,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", metavar="SECONDS", min=0.1, max=MAX_SECONDS, callback=finite,
            help="Give up on Redis after this many seconds.",
        ),
    ] = 10.0,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Exit 0 when every queue is being worked; otherwise exit 1 and say why, one line per problem.

    Problems: Redis unreachable; nothing at all under the prefix; a served queue with no live
    worker; jobs ready with no consumer at all (Node or Python); a stale worker heartbeat; workers
    alive but no job finishing.
    """
    settings = settings_from(redis_url, prefix)
    url = settings.queue_redis_url

    async def go() -> HealthReport:
        client = make_client(url, what="twenty-jobs check")
        try:
            async def judge() -> HealthReport:
                await ping(client)
                await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
                report = await evaluate_health(
                    client, settings.prefix, queues=queue, host=socket.gethostname() if this_host else None,
                    stuck_after_s=stuck_after,
                )
                if not queue and not this_host and not report.heartbeats:
                    await _require_something_under_prefix(client, settings.prefix, report)
                return report

            try:
                return await asyncio.wait_for(judge(), timeout)
            except TimeoutError:
                return unreachable_report(url, f"no answer within {timeout:g} s")
            except (RedisError, OSError) as exc:
                return unreachable_report(url, str(exc).rstrip(".") or type(exc).__name__)
        finally:
            await client.aclose()

    report = run(go(), settings=settings)
    if json_out:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            message = carry_prefix(problem.message, settings.prefix)
            if problem.code == "redis_unreachable" and is_loopback(url):
                message = with_local_redis_hint(message)
            typer.echo(f"unhealthy: {message}")
        if report.healthy:
            typer.echo(summary_line(report))
        for warning in report.warnings:
            typer.echo(f"warning: {carry_prefix(warning.message, settings.prefix)}")
    raise typer.Exit(0 if report.healthy else 1)


async def _require_something_under_prefix(client: aioredis.Redis, prefix: str, report: HealthReport) -> None:
    """Nothing under the prefix: fail with the same sentence as `status`."""
    if await discover_queues(client, prefix):
        return
    report.problems.append(Finding("nothing_under_prefix", NOTHING_UNDER_PREFIX.format(prefix=prefix)))
