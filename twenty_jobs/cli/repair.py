"""`twenty-jobs repair`: find job hashes that are in no list or set of their queue and, with
`--apply`, put each back where its hash says it belongs (twenty_jobs/ops/repair.py). Without
`--apply` it only says what it would do."""

from __future__ import annotations

from typing import Annotated

import typer

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import run
from twenty_jobs.cli.options import CustomQueueOpt, JsonOpt, PrefixOpt, QueuesOpt, RedisUrlOpt
from twenty_jobs.cli.output import print_json
from twenty_jobs.ops.queues import in_display_order
from twenty_jobs.ops.repair import RepairReport, repair_orphans
from twenty_jobs.ops.snapshot import discover_queues


def repair(
    queue: QueuesOpt = None,
    apply: Annotated[bool, typer.Option("--apply", help="Put the jobs back (default: only say what would be done).")]
    = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Put back jobs that are in no list or set of their queue (dry run unless --apply).

    Such orphans never run. Each goes where its hash says: waiting (paused on a paused queue),
    delayed, prioritized, active, completed or failed. Exit 1 when --apply left some alone.
    """
    settings = settings_from(redis_url, prefix)

    async def go() -> RepairReport:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
            names = list(dict.fromkeys(queue)) if queue else in_display_order(
                await discover_queues(client, settings.prefix)
            )
            return await repair_orphans(client, settings.prefix, names, apply=apply)

    report = run(go(), settings=settings)
    if json_out:
        print_json(report.as_dict())
    else:
        for a in report.actions:
            # A reason that is not a destination already says "left alone: why".
            told = f"-> {a.state}: {a.reason}" if a.done or (a.state and not apply) else a.reason
            typer.echo(f"{a.queue} {a.job_id} ({a.name or '?'}) {told}")
        examined = f"{report.progress.keys_examined} key(s) examined"
        if not report.actions:
            typer.echo(f"no orphaned jobs in {', '.join(report.queues) or 'no queue'} ({examined})")
        elif apply:
            typer.echo(f"put back {len(report.repaired)} of {len(report.actions)} orphaned job(s) ({examined})")
        else:
            typer.echo(f"dry run: {len(report.actions)} orphaned job(s) found ({examined}); "
                       "run again with --apply to put them back")
    raise typer.Exit(1 if apply and report.left else 0)
