"""`twenty-jobs cron list|add|remove|register`: job schedulers (Twenty's crons)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twenty_jobs.cli.context import check_queues, connect, import_modules, settings_from
from twenty_jobs.cli.errors import fail, run
from twenty_jobs.cli.inputs import parse_json_arg
from twenty_jobs.cli.options import (
    MAX_DELAY_MS,
    CustomQueueOpt,
    ImportOpt,
    JsonOpt,
    PrefixOpt,
    QueueArg,
    QueuesOpt,
    RedisUrlOpt,
)
from twenty_jobs.cli.output import ago, console, escape, print_json
from twenty_jobs.observability.health import now_ms
from twenty_jobs.ops import crons as cron_ops
from twenty_jobs.ops.snapshot import discover_queues
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import default_registry
from twenty_jobs.twenty.queues import KNOWN_QUEUES

cron_app = typer.Typer(help="Job schedulers (Twenty's crons): list, add, remove, register.", no_args_is_help=True)


@cron_app.command("list")
def cron_list(
    queue: QueuesOpt = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Job schedulers (and legacy repeatable jobs) with their schedule and next run.

    `iterations` is Node's iterationCount: the jobs the scheduler has created so far, counting the
    next one waiting in `delayed` (docs/cli.md), so a scheduler that has not run yet shows 1.
    """
    settings = settings_from(redis_url, prefix)

    async def go() -> list[cron_ops.CronEntry]:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
            names = queue or list(dict.fromkeys([*KNOWN_QUEUES, *await discover_queues(client, settings.prefix)]))
            return await cron_ops.list_crons(client, settings.prefix, names)

    entries = run(go(), settings=settings)
    if json_out:
        print_json({"crons": [e.as_dict() for e in entries]})
        return
    out = console()
    if not entries:
        out.print("no job schedulers")
        return
    at = now_ms()
    table = Table(title="job schedulers", title_justify="left")
    for col in ("queue", "id", "job", "schedule", "next run", "iterations", "kind"):
        table.add_column(col, no_wrap=col in ("queue", "id"))
    for e in entries:
        kind = "[yellow]legacy repeatable[/yellow]" if e.kind == "legacy" else "scheduler"
        table.add_row(
            escape(e.queue), escape(e.id), escape(e.name or "?"), escape(e.schedule), ago(e.next_run, at),
            "-" if e.iterations is None else str(e.iterations), kind,
        )
    out.print(table)


@cron_app.command("add")
def cron_add(
    queue: QueueArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Job name, e.g. CleanOnboardingWorkspacesJob.")],
    pattern: Annotated[
        str | None, typer.Option("--pattern", metavar="CRON", help="Cron expression, e.g. '*/10 * * * *'.")
    ] = None,
    every: Annotated[
        int | None,
        typer.Option("--every", metavar="MS", min=1, max=MAX_DELAY_MS, help="Repeat every N milliseconds."),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option("--job-id", metavar="ID", help="Scheduler id becomes <name>.<job-id>.")
    ] = None,
    data: Annotated[str, typer.Option("--data", "-d", metavar="JSON", help="Job data as JSON.")] = "{}",
    tz: Annotated[
        str | None, typer.Option("--tz", metavar="ZONE", help="Time zone of the pattern, e.g. Europe/Paris.")
    ] = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Create or update a job scheduler the way Twenty's addCron does."""
    if (pattern is None) == (every is None):
        fail("give exactly one of --pattern or --every")
    payload = parse_json_arg(data, "--data")
    settings = settings_from(redis_url, prefix)

    async def go() -> str:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await producer.add_cron(queue, name, payload, pattern=pattern, every_ms=every, job_id=job_id, tz=tz)

    scheduler_id = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "scheduler_id": scheduler_id})
    else:
        typer.echo(f"job scheduler '{scheduler_id}' on {queue}: {pattern or f'every {every} ms'}")


@cron_app.command("remove")
def cron_remove(
    queue: QueueArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Job name (the scheduler id, without --job-id).")],
    job_id: Annotated[
        str | None, typer.Option("--job-id", metavar="ID", help="For a scheduler created with --job-id.")
    ] = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Remove a job scheduler (Twenty's removeCron). Removing one that does not exist is not an error."""
    settings = settings_from(redis_url, prefix)

    async def go() -> bool:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await producer.remove_cron(queue, name, job_id=job_id)

    removed = run(go(), settings=settings)
    scheduler_id = f"{name}.{job_id}" if job_id else name
    if json_out:
        print_json({"queue": queue, "scheduler_id": scheduler_id, "removed": removed})
    elif removed:
        typer.echo(f"removed job scheduler '{scheduler_id}' from {queue}")
    else:
        typer.echo(f"no job scheduler '{scheduler_id}' on {queue}: nothing to remove", err=True)


@cron_app.command("register")
def cron_register(
    import_: ImportOpt = None,
    builtin_jobs: Annotated[
        bool, typer.Option("--builtin-jobs/--no-builtin-jobs", help="Load the ported Twenty jobs too.")
    ] = True,
    json_out: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Install the crons that Python handlers declare (cron= / every_ms= on @twenty_jobs.job),
    like Twenty's `cron:register:all`. Skipped when DISABLE_CRON_JOBS_REGISTRATION=true."""
    if cron_ops.registration_disabled():
        if json_out:
            print_json({"skipped": True, "reason": f"{cron_ops.DISABLE_ENV}=true", "registered": []})
        else:
            typer.echo(f"cron registration skipped: {cron_ops.DISABLE_ENV} is set")
        return
    settings = settings_from(redis_url, prefix)
    import_modules(import_ or [], builtin_jobs)

    async def go() -> list[cron_ops.Registration]:
        async with connect(settings) as client:
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await cron_ops.register_crons(producer, default_registry)

    results = run(go(), settings=settings)
    failures = [r for r in results if r.error]
    if json_out:
        print_json({"skipped": False, "registered": [r.as_dict() for r in results]})
    elif not results:
        typer.echo("no handler declares a cron (use cron= or every_ms= on @twenty_jobs.job)")
    else:
        for r in results:
            if r.error:
                typer.echo(f"failed {r.queue} {r.scheduler_id}: {r.error}", err=True)
            else:
                typer.echo(f"registered {r.queue} {r.scheduler_id}: {r.schedule}")
    if failures:
        raise typer.Exit(1)
