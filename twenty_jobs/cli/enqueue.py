"""`twenty-jobs enqueue`: add one job the way Twenty's MessageQueueService does."""

from __future__ import annotations

from typing import Annotated

import typer

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import fail, run
from twenty_jobs.cli.inputs import parse_backoff, read_data_arg
from twenty_jobs.cli.options import (
    MAX_DELAY_MS,
    MAX_RETRY_LIMIT,
    CustomQueueOpt,
    PrefixOpt,
    QueueArg,
    RedisUrlOpt,
)
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.twenty.options import MAX_PRIORITY


def enqueue(
    queue: QueueArg,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Job name (Twenty's processor class name), e.g. CallWebhookJob.")
    ],
    data: Annotated[
        str, typer.Option("--data", "-d", metavar="JSON", help="Job data as JSON ('-' reads standard input).")
    ] = "{}",
    id_: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="Job id; stored as <id>-<uuid> and deduplicated like Twenty."),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority", metavar="N", min=0, max=MAX_PRIORITY, help="Lower runs first (default: the queue's)."
        ),
    ] = None,
    retry_limit: Annotated[
        int,
        typer.Option("--retry-limit", metavar="N", min=0, max=MAX_RETRY_LIMIT, help="Retries after the first attempt."),
    ] = 0,
    delay: Annotated[
        int | None,
        typer.Option(
            "--delay", metavar="MS", min=0, max=MAX_DELAY_MS, help="Delay in milliseconds (at most 10 years)."
        ),
    ] = None,
    backoff: Annotated[
        str | None,
        typer.Option("--backoff", metavar="SPEC", help="Retry backoff: fixed:MS or exponential:MS[:JITTER]."),
    ] = None,
    allow_duplicate: Annotated[bool, typer.Option("--allow-duplicate", help="Skip Twenty's dedupe by id.")] = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Add one job the way Twenty's MessageQueueService does; prints the new job id."""
    settings = settings_from(redis_url, prefix)
    payload = read_data_arg(data)
    backoff_opt = parse_backoff(backoff) if backoff else None

    async def go() -> str | None:
        async with connect(settings, what="enqueue") as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await producer.add(
                queue,
                name,
                payload,
                id=id_,
                priority=priority,
                retry_limit=retry_limit,
                delay=delay,
                backoff=backoff_opt,
                allow_duplicate=allow_duplicate,
            )

    try:
        job_id = run(go(), settings=settings)
    except ValueError as exc:
        fail(str(exc))
    if job_id is None:
        typer.echo(f"deduplicated: a job with id '{id_}' is already waiting on {queue}; nothing added", err=True)
        return
    typer.echo(job_id)
