"""`twenty-jobs status`: job counts per state and live workers, once or refreshed with --watch."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import redis.asyncio as aioredis
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from twenty_jobs.cli.context import check_queues, connect, settings_from
from twenty_jobs.cli.errors import EXIT_RUNTIME, run
from twenty_jobs.cli.options import MAX_SECONDS, CustomQueueOpt, JsonOpt, PrefixOpt, QueuesOpt, RedisUrlOpt, finite
from twenty_jobs.cli.output import console, escape, print_json
from twenty_jobs.observability.health import now_ms
from twenty_jobs.ops.status import NOTHING_UNDER_PREFIX, collect_status

COLUMNS = ("waiting", "prioritized", "active", "delayed", "completed", "failed", "paused_jobs")


def status_table(rows: list[dict[str, Any]], prefix: str) -> Table:
    table = Table(title=f"queues under prefix '{escape(prefix)}'", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for col in COLUMNS:
        table.add_column("paused" if col == "paused_jobs" else col, justify="right")
    table.add_column("workers (node/python)", justify="right")
    for row in rows:
        workers = "?" if row["workers"] is None else f"{row['workers']} ({row['node_workers']}/{row['python_workers']})"
        idle_backlog = row["ready"] and not (row["workers"] or row["python_workers"])
        # Escaped: a bare "[paused]" would be read as rich markup and vanish.
        name = escape(row["name"] + (" [paused]" if row["is_paused"] else ""))
        table.add_row(
            f"[red]{name}[/red]" if idle_backlog else name,
            *[str(row[c]) for c in COLUMNS],
            f"[red]{workers}[/red]" if idle_backlog else workers,
        )
    return table


def status(
    queue: QueuesOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until interrupted.")] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", metavar="SECONDS", min=0.2, max=MAX_SECONDS, callback=finite,
            help="Seconds between refreshes with --watch.",
        ),
    ] = 2.0,
    iterations: Annotated[
        int, typer.Option("--iterations", min=0, hidden=True, help="Stop --watch after N refreshes.")
    ] = 0,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Per queue: waiting, prioritized, active, delayed, completed, failed, paused, live workers."""
    settings = settings_from(redis_url, prefix)
    out = console()

    async def go() -> None:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
            if watch:
                await _watch(client, settings.prefix, queue, out, json_out, interval, iterations)
                return
            rows = await collect_status(client, settings.prefix, queue, now_ms())
            _show(out, rows, settings.prefix, json_out)
            if not rows:
                # The same verdict as `check`: nothing under the prefix is the wrong Redis or prefix.
                raise typer.Exit(EXIT_RUNTIME)

    try:
        run(go(), settings=settings)
    except KeyboardInterrupt:
        pass


def _show(out: Console, rows: list[dict[str, Any]], prefix: str, json_out: bool) -> None:
    if json_out:
        print_json({"prefix": prefix, "at": now_ms(), "queues": rows})
    elif not rows:
        typer.echo(NOTHING_UNDER_PREFIX.format(prefix=prefix), err=True)
    else:
        out.print(status_table(rows, prefix))


async def _watch(
    client: aioredis.Redis, prefix: str, queues: list[str] | None, out: Console,
    json_out: bool, interval: float, iterations: int,
) -> None:
    # Discovering queues SCANs the keyspace: do it once, then only re-read the counts.
    names = queues or [r["name"] for r in await collect_status(client, prefix, None, now_ms())]
    count = 0
    if json_out:
        while not iterations or count < iterations:
            rows = await collect_status(client, prefix, names, now_ms())
            print_json({"prefix": prefix, "at": now_ms(), "queues": rows})
            count += 1
            if not iterations or count < iterations:
                await asyncio.sleep(interval)
        return
    with Live(console=out, auto_refresh=False) as live:
        while not iterations or count < iterations:
            rows = await collect_status(client, prefix, names, now_ms())
            live.update(status_table(rows, prefix), refresh=True)
            count += 1
            if not iterations or count < iterations:
                await asyncio.sleep(interval)
