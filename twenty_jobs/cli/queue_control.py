"""Queue control: `twenty-jobs pause|resume QUEUE` and the `twenty-jobs queue` group (stats, pause,
resume, drain, clean, obliterate: twenty_jobs/ops/queues.py).

The top-level `pause`/`resume` and `queue pause`/`queue resume` are the same commands. Drain,
clean and obliterate delete jobs: they ask first, `--yes` skips the question, and without a
terminal to ask on they refuse unless `--yes` is given.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import fail, run
from twenty_jobs.cli.options import CustomQueueOpt, JsonOpt, PrefixOpt, QueueArg, QueuesOpt, RedisUrlOpt
from twenty_jobs.cli.output import Progress, console, escape, print_json
from twenty_jobs.errors import ConfigError
from twenty_jobs.observability.heartbeat import now_ms
from twenty_jobs.ops import queues as queue_ops
from twenty_jobs.ops.failed import parse_duration_ms

queue_app = typer.Typer(
    help="Queue stats, and pause, resume, drain, clean or obliterate a queue.", no_args_is_help=True
)

ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Go ahead even when Node bullmq < 6 shares the queue (docs/mixed-versions.md)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
BatchOpt = Annotated[
    int, typer.Option("--batch", metavar="N", min=1, max=100_000, help="Jobs deleted per Redis script call.")
]

STATS_COLUMNS = ("waiting", "active", "completed", "failed", "delayed", "paused", "prioritized")


def _can_ask() -> bool:
    return sys.stdin.isatty()


def _confirm(action: str, yes: bool) -> None:
    """Ask before deleting; refuse in one line when nobody can be asked."""
    if yes:
        return
    if not _can_ask():
        fail(f"{action} deletes jobs for good: pass --yes to confirm (no terminal to ask on)")
    if not typer.confirm(f"{action}: this deletes jobs for good. Go on?", default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(1)


# -- pause / resume (top level and in the group) ------------------------------------------------


def _pause_or_resume(
    queue: str, paused: bool, force: bool, json_out: bool, custom_queue: bool, redis_url: str | None,
    prefix: str | None,
) -> None:
    settings = settings_from(redis_url, prefix)
    action = "pause" if paused else "resume"

    async def go() -> None:
        async with connect(settings, what=action) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            change = queue_ops.pause_queue if paused else queue_ops.resume_queue
            await change(client, settings.prefix, queue, force=force)

    run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "paused": paused})
    else:
        typer.echo(f"{queue}: {action}d")


@queue_app.command("pause")
def pause(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="Queue to pause (workers stop fetching; producers keep adding).")
    ],
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Pause QUEUE for every worker, Node and Python. Refused while Node bullmq < 6 shares it (its
    resume would lose jobs added meanwhile), unless --force."""
    _pause_or_resume(queue, True, force, json_out, custom_queue, redis_url, prefix)


@queue_app.command("resume")
def resume(
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="Queue to resume.")],
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Resume a paused QUEUE. Refused while Node bullmq < 6 shares it, unless --force."""
    _pause_or_resume(queue, False, force, json_out, custom_queue, redis_url, prefix)


# -- stats -------------------------------------------------------------------------------------


@queue_app.command("stats")
def stats(
    queue: QueuesOpt = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Job counts of every queue under the prefix: waiting, active, completed, failed, delayed,
    paused, prioritized, and whether the queue is paused."""
    settings = settings_from(redis_url, prefix)

    async def go() -> list[queue_ops.QueueStats]:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
            return await queue_ops.queue_stats(client, settings.prefix, queue)

    found = run(go(), settings=settings)
    if json_out:
        print_json(queue_ops.stats_document(settings.prefix, now_ms(), found))
        return
    out = console()
    if not found:
        out.print(f"no queues under prefix '{settings.prefix}' in this Redis (check --redis-url and --prefix)",
                  markup=False)
        return
    table = Table(title=f"queues under prefix '{escape(settings.prefix)}'", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for col in STATS_COLUMNS:
        table.add_column(col, justify="right")
    table.add_column("state")
    for s in found:
        row = s.as_dict()
        table.add_row(escape(s.queue), *[str(row[c]) for c in STATS_COLUMNS], "paused" if s.is_paused else "running")
    out.print(table)


# -- drain, clean, obliterate: they delete jobs -------------------------------------------------


@queue_app.command("drain")
def drain(
    queue: QueueArg,
    delayed: Annotated[bool, typer.Option("--delayed", help="Delete the delayed jobs too.")] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delete every job of QUEUE waiting to run (waiting, paused, prioritized; delayed with
    --delayed). Active and finished jobs, and each cron's next run, stay."""
    settings = settings_from(redis_url, prefix)
    _confirm(f"drain {queue}", yes)

    async def go() -> int:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            return await queue_ops.drain_queue(client, settings.prefix, queue, delayed=delayed)

    removed = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "removed": removed})
    else:
        typer.echo(f"{queue}: drained, {removed} job(s) deleted")


@queue_app.command("clean")
def clean(
    queue: QueueArg,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", metavar="STATE",
            help="completed, failed, delayed, waiting, active, paused or prioritized (repeatable). "
            "Default: completed and failed.",
        ),
    ] = None,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE",
            help="Only jobs older than this (30s, 15m, 12h, 7d); finished jobs by when they finished.",
        ),
    ] = "0",
    batch: BatchOpt = queue_ops.DEFAULT_BATCH,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delete old jobs of QUEUE (hash, logs and all), through BullMQ's clean script."""
    try:
        grace = parse_duration_ms(older_than)
        states = tuple(dict.fromkeys(state)) if state else queue_ops.DEFAULT_CLEAN_STATES
        for name in states:
            queue_ops.clean_state(name)
    except ConfigError as exc:
        fail(str(exc))
    settings = settings_from(redis_url, prefix)
    _confirm(f"clean {', '.join(states)} jobs of {queue}", yes)

    async def go() -> dict[str, int]:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            with Progress(f"cleaning {queue}") as progress:
                return await queue_ops.clean_queue(
                    client, settings.prefix, queue, states=states, older_than_ms=grace, batch=batch,
                    now_ms=now_ms(), progress=progress,
                )

    removed = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "removed": removed})
    else:
        typer.echo(f"{queue}: removed " + ", ".join(f"{n} {s}" for s, n in removed.items()) + " job(s)")


@queue_app.command("obliterate")
def obliterate(
    queue: QueueArg,
    force: Annotated[bool, typer.Option("--force", help="Delete active jobs too.")] = False,
    batch: BatchOpt = queue_ops.DEFAULT_BATCH,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delete QUEUE entirely: every job, its crons and every key (BullMQ's obliterate). Refused
    while jobs are active, unless --force."""
    settings = settings_from(redis_url, prefix)
    _confirm(f"obliterate {queue}", yes)

    async def go() -> int:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            with Progress(f"obliterating {queue}") as progress:
                return await queue_ops.obliterate_queue(
                    client, settings.prefix, queue, force=force, batch=batch, progress=progress
                )

    removed = run(go(), settings=settings)
    if json_out:
        print_json({"queue": queue, "obliterated": True, "removed": removed})
    else:
        typer.echo(f"{queue}: obliterated, {removed} job(s) deleted")
