"""`twenty-jobs doctor`: what is wrong or risky in this Redis, and what to do about each."""

from __future__ import annotations

from typing import Annotated

import typer

from twenty_jobs.cli.context import check_queues, connect, import_modules, settings_from
from twenty_jobs.cli.errors import run
from twenty_jobs.cli.options import CustomQueueOpt, ImportOpt, JsonOpt, PrefixOpt, QueuesOpt, RedisUrlOpt
from twenty_jobs.cli.output import carry_prefix, console, escape, print_json
from twenty_jobs.observability.health import now_ms, read_heartbeats
from twenty_jobs.ops.doctor import DoctorReport, run_doctor
from twenty_jobs.ops.snapshot import discover_queues, queue_exists
from twenty_jobs.runtime.registry import Registry, default_registry
from twenty_jobs.twenty.queues import KNOWN_QUEUES

LEVEL_STYLE = {"ok": "green", "info": "blue", "warn": "yellow", "error": "red"}


def doctor(
    queue: QueuesOpt = None,
    import_: ImportOpt = None,
    builtin_jobs: Annotated[
        bool,
        typer.Option(
            "--builtin-jobs/--no-builtin-jobs",
            help="Also check the ported Twenty jobs' handlers (as `work` would load them).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Check Redis and the queues for what breaks Twenty and Python workers, and say what to do.

    Exit 1 when any finding is an error.
    """
    settings = settings_from(redis_url, prefix)
    registry: Registry | None = None
    if import_ or builtin_jobs:
        import_modules(import_ or [], builtin_jobs)
        registry = default_registry

    async def go() -> DoctorReport:
        async with connect(settings) as client:
            await check_queues(client, settings.prefix, queue or [], custom=custom_queue)
            names = queue or list(dict.fromkeys([
                *[q for q in KNOWN_QUEUES if await queue_exists(client, settings.prefix, q)],
                *await discover_queues(client, settings.prefix),
                *[h.queue for h in await read_heartbeats(client, settings.prefix)],
            ]))
            return await run_doctor(client, settings.prefix, names, registry=registry, at=now_ms())

    report = run(go(), settings=settings)
    if json_out:
        print_json(report.as_dict())
    else:
        out = console()
        out.print(f"queues checked: {escape(', '.join(report.queues)) or 'none found under this prefix'}")
        for f in report.findings:
            style = LEVEL_STYLE[f.level]
            out.print(f"[{style}]{f.level.upper():5}[/{style}] {escape(carry_prefix(f.message, settings.prefix))}")
            if f.fix:
                out.print(f"      [bold]fix:[/bold] {escape(carry_prefix(f.fix, settings.prefix))}")
        out.print(f"{report.errors} error(s), {report.warnings} warning(s)")
    raise typer.Exit(1 if report.errors else 0)
