"""Queue control: `twenty-jobs pause QUEUE` and `twenty-jobs resume QUEUE`.

Queue-wide operations live in this module: the `queue` group (stats, drain, clean, obliterate,
and pause/resume under it too) goes here as a `typer.Typer()` registered in app.py, reusing
`_pause_or_resume` and the shared options.
"""

from __future__ import annotations

from typing import Annotated

import typer

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import run
from twenty_jobs.cli.options import CustomQueueOpt, PrefixOpt, RedisUrlOpt
from twenty_jobs.ops.queue_control import Action, pause_or_resume

ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Go ahead even when Node bullmq < 6 shares the queue (docs/mixed-versions.md)."),
]


def _pause_or_resume(
    queue: str, action: Action, force: bool, custom_queue: bool, redis_url: str | None, prefix: str | None
) -> None:
    settings = settings_from(redis_url, prefix)

    async def go() -> None:
        async with connect(settings, what=action) as client:
            await check_queues(client, settings.prefix, [queue], custom=custom_queue)
            await pause_or_resume(client, settings.prefix, queue, action, force=force)

    run(go(), settings=settings)
    typer.echo(f"{queue}: {action}d")


def pause(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="Queue to pause (workers stop fetching; producers keep adding).")
    ],
    force: ForceOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Pause a queue for every worker, Node and Python. Refused when Node bullmq < 6 shares it."""
    _pause_or_resume(queue, "pause", force, custom_queue, redis_url, prefix)


def resume(
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="Queue to resume.")],
    force: ForceOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Resume a paused queue. Refused when Node bullmq < 6 shares it."""
    _pause_or_resume(queue, "resume", force, custom_queue, redis_url, prefix)
