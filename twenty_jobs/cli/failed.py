"""`twenty-jobs failed list|retry|clean`: the failed jobs of a queue."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import fail, run
from twenty_jobs.cli.options import CustomQueueOpt, JsonOpt, PrefixOpt, QueueArg, RedisUrlOpt
from twenty_jobs.cli.output import Progress, ago, console, escape, print_json, shorten
from twenty_jobs.errors import ConfigError
from twenty_jobs.observability.health import now_ms
from twenty_jobs.ops import failed as failed_ops

failed_app = typer.Typer(help="List, retry and clean failed jobs.", no_args_is_help=True)

# Longest reason shown in the table (the whole reason is in --json).
REASON_WIDTH = 120

BatchOpt = Annotated[
    int, typer.Option("--batch", metavar="N", min=1, max=100_000, help="Jobs handled per Redis script call.")
]


@failed_app.command("list")
def failed_list(
    queue: QueueArg,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=100_000, help="How many, newest first.")
    ] = 20,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """The most recently failed jobs of QUEUE, with their reasons."""
    settings = settings_from(redis_url, prefix)

    async def go() -> tuple[int, list[failed_ops.FailedJob]]:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            return (await failed_ops.count_failed(client, settings.prefix, queue),
                    await failed_ops.list_failed(client, settings.prefix, queue, limit))

    total, jobs = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "total": total, "jobs": [j.as_dict() for j in jobs]})
        return
    out = console()
    if not jobs:
        out.print(f"no failed jobs on {escape(queue)}")
        return
    at = now_ms()
    table = Table(
        title=f"{escape(queue)}: {len(jobs)} of {total} failed job(s), newest first", title_justify="left"
    )
    for col in ("id", "name", "attempts", "failed", "workspace", "reason"):
        table.add_column(col, no_wrap=col in ("id", "name"), overflow="fold")
    for j in jobs:
        table.add_row(
            escape(j.id), escape(j.name or "?"), f"{j.attempts_made}/{j.attempts}", ago(j.failed_at, at),
            escape(j.workspace_id or ""), escape(shorten(j.failed_reason or "", REASON_WIDTH)),
        )
    out.print(table)


@failed_app.command("retry")
def failed_retry(
    queue: QueueArg,
    job_id: Annotated[str | None, typer.Option("--id", metavar="ID", help="Retry this job.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed job of the queue.")] = False,
    batch: BatchOpt = failed_ops.DEFAULT_BATCH,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Move failed jobs back to the queue (their attempts count is kept, as Node's retry does)."""
    if (job_id is None) == (not all_):
        fail("give exactly one of --id ID or --all")
    settings = settings_from(redis_url, prefix)

    async def go() -> int:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            if job_id is not None:
                await failed_ops.retry_one(client, settings.prefix, queue, job_id)
                return 1
            with Progress(f"retrying failed jobs on {queue}") as progress:
                return await failed_ops.retry_all(
                    client, settings.prefix, queue, batch=batch, now_ms=now_ms(), progress=progress
                )

    moved = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "retried": moved})
    else:
        typer.echo(f"retried {moved} job(s) on {queue}" if job_id is None else f"retried job {job_id} on {queue}")


@failed_app.command("clean")
def failed_clean(
    queue: QueueArg,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE", help="Only jobs that failed longer ago than this (30s, 15m, 12h, 7d)."
        ),
    ] = "0",
    batch: BatchOpt = failed_ops.DEFAULT_BATCH,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delete failed jobs (hash, logs and all) for good."""
    try:
        grace = failed_ops.parse_duration_ms(older_than)
    except ConfigError as exc:
        fail(str(exc))
    settings = settings_from(redis_url, prefix)

    async def go() -> int:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            with Progress(f"cleaning failed jobs on {queue}") as progress:
                return await failed_ops.clean_failed(
                    client, settings.prefix, queue, older_than_ms=grace, batch=batch, now_ms=now_ms(),
                    progress=progress,
                )

    removed = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "removed": removed})
    else:
        typer.echo(f"removed {removed} failed job(s) from {queue}")
