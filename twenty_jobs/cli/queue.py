"""`twenty-jobs queue`: stats of every queue under the prefix, and pause, resume, drain, clean and
obliterate (twenty_jobs/ops/queues.py). Drain, clean and obliterate delete jobs: they ask first,
`--yes` skips the question, and without a terminal to ask on they refuse unless `--yes` is given.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from twenty_jobs.cli.ops import (
    CustomQueueOpt,
    JsonOpt,
    PrefixOpt,
    QueuesOpt,
    RedisUrlOpt,
    _check_queue_names,
    _connect,
    _console,
    _fail,
    _print_json,
    _Progress,
    _run,
    _settings,
)
from twenty_jobs.errors import ConfigError
from twenty_jobs.observability.heartbeat import now_ms
from twenty_jobs.ops import queues as queue_ops
from twenty_jobs.ops.failed import parse_duration_ms

queue_app = typer.Typer(help="Queue stats, and pause, resume, drain, clean or obliterate a queue.",
                        no_args_is_help=True)

QueueArg = Annotated[str, typer.Argument(help="Queue name, e.g. email-queue.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Pause/resume even when Node bullmq < 6 shares the queue.")
]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Jobs deleted per Redis script call.")]


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")


def _can_ask() -> bool:
    return sys.stdin.isatty()


def _confirm(action: str, yes: bool) -> None:
    """Ask before deleting; refuse in one line when nobody can be asked."""
    if yes:
        return
    if not _can_ask():
        _fail(f"{action} deletes jobs for good: pass --yes to confirm (no terminal to ask on)")
    if not typer.confirm(f"{action}: this deletes jobs for good. Go on?", default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(1)


_STATS_COLUMNS = ("waiting", "active", "completed", "failed", "delayed", "paused", "prioritized")


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
    settings = _settings(redis_url, prefix)

    async def go() -> list[queue_ops.QueueStats]:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, queue or [], custom_queue)
            return await queue_ops.queue_stats(client, settings.prefix, queue)

    found = _run(go())
    if json_out:
        _print_json(queue_ops.stats_document(settings.prefix, now_ms(), found))
        return
    console = _console()
    if not found:
        console.print(f"no queues under prefix '{settings.prefix}' in this Redis (check --redis-url and --prefix)",
                      markup=False)
        return
    table = Table(title=f"queues under prefix '{settings.prefix}'", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for col in _STATS_COLUMNS:
        table.add_column(col, justify="right")
    table.add_column("state")
    for s in found:
        row = s.as_dict()
        table.add_row(s.queue, *[str(row[c]) for c in _STATS_COLUMNS], "paused" if s.is_paused else "running")
    console.print(table)


@queue_app.command("pause")
def pause(
    queue: QueueArg,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Pause QUEUE for every worker, Node and Python (producers keep adding). Refused while Node
    bullmq < 6 shares it (its resume would lose jobs added meanwhile), unless --force."""
    _pause_or_resume(queue, True, force, json_out, custom_queue, redis_url, prefix)


@queue_app.command("resume")
def resume(
    queue: QueueArg,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Resume QUEUE. Refused while Node bullmq < 6 shares it, unless --force."""
    _pause_or_resume(queue, False, force, json_out, custom_queue, redis_url, prefix)


def _pause_or_resume(
    queue: str, paused: bool, force: bool, json_out: bool, custom_queue: bool, redis_url: str | None,
    prefix: str | None,
) -> None:
    settings = _settings(redis_url, prefix)

    async def go() -> None:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            change = queue_ops.pause_queue if paused else queue_ops.resume_queue
            await change(client, settings.prefix, queue, force=force)

    _run(go())
    if json_out:
        _print_json({"queue": queue, "paused": paused})
    else:
        typer.echo(f"{queue}: {'paused' if paused else 'resumed'}")


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
    settings = _settings(redis_url, prefix)
    _confirm(f"drain {queue}", yes)

    async def go() -> int:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            return await queue_ops.drain_queue(client, settings.prefix, queue, delayed=delayed)

    removed = _run(go())
    if json_out:
        _print_json({"queue": queue, "removed": removed})
    else:
        typer.echo(f"{queue}: drained, {removed} job(s) deleted")


@queue_app.command("clean")
def clean(
    queue: QueueArg,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="completed, failed, delayed, waiting, active, paused or prioritized "
                     "(repeatable). Default: completed and failed."),
    ] = None,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only jobs older than this (30s, 15m, 12h, 7d); finished jobs by "
                          "when they finished.")
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
        _fail(str(exc))
    settings = _settings(redis_url, prefix)
    _confirm(f"clean {', '.join(states)} jobs of {queue}", yes)

    async def go() -> dict[str, int]:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            with _Progress(f"cleaning {queue}") as progress:
                return await queue_ops.clean_queue(client, settings.prefix, queue, states=states, older_than_ms=grace,
                                                   batch=batch, now_ms=now_ms(), progress=progress)

    removed = _run(go())
    if json_out:
        _print_json({"queue": queue, "removed": removed})
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
    settings = _settings(redis_url, prefix)
    _confirm(f"obliterate {queue}", yes)

    async def go() -> int:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            with _Progress(f"obliterating {queue}") as progress:
                return await queue_ops.obliterate_queue(client, settings.prefix, queue, force=force, batch=batch,
                                                        progress=progress)

    removed = _run(go())
    if json_out:
        _print_json({"queue": queue, "obliterated": True, "removed": removed})
    else:
        typer.echo(f"{queue}: obliterated, {removed} job(s) deleted")
