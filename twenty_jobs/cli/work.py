"""`twenty-jobs work`: run the workers of the selected queues in this process."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from twenty_jobs import __version__
from twenty_jobs.cli.context import import_modules, settings_from
from twenty_jobs.cli.errors import fail, run
from twenty_jobs.cli.options import (
    MAX_CONCURRENCY,
    MAX_LOCK_DURATION_MS,
    MAX_SECONDS,
    MAX_STALLED_COUNT,
    MAX_STALLED_INTERVAL_MS,
    ImportOpt,
    LogFormat,
    LogLevel,
    PrefixOpt,
    RedisUrlOpt,
    finite,
)
from twenty_jobs.errors import ConfigError
from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.observability.worker_services import build_worker_services
from twenty_jobs.runtime.registry import default_registry
from twenty_jobs.runtime.supervisor import resolve_processes, run_supervisor
from twenty_jobs.runtime.worker import WorkerConfig, run_worker
from twenty_jobs.settings import redacted_url
from twenty_jobs.twenty.queues import check_queue_name, select_queues

log = logging.getLogger("twenty_jobs.cli")

# How to serve a queue that is not Twenty's: `work` only serves queues it has handlers for.
HOW_TO_SERVE_CUSTOM = "declare a handler for it (@twenty_jobs.job(queue=...)) in a module you load with --import"


def work(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", metavar="QUEUE", help="Serve this queue (repeatable). Default: every queue with a handler."
        ),
    ] = None,
    exclude_queue: Annotated[
        list[str] | None,
        typer.Option("--exclude-queue", "-x", metavar="QUEUE", help="Do not serve this queue (repeatable)."),
    ] = None,
    import_: ImportOpt = None,
    builtin_jobs: Annotated[
        bool, typer.Option("--builtin-jobs/--no-builtin-jobs", help="Load the ported Twenty jobs (webhooks, email).")
    ] = True,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", metavar="N", min=1, max=MAX_CONCURRENCY,
            help=f"Jobs in parallel per queue, 1 to {MAX_CONCURRENCY} (default: Twenty's per-queue value).",
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit 0 once the served queues have nothing left to run.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", metavar="SECONDS", min=0, max=MAX_SECONDS, callback=finite,
            help="Seconds active jobs get to finish after SIGTERM/SIGINT.",
        ),
    ] = 30.0,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    lock_duration_ms: Annotated[
        int | None,
        typer.Option(
            "--lock-duration-ms", metavar="MS", min=1000, max=MAX_LOCK_DURATION_MS,
            help="Override every queue's lockDuration (1 s to 1 day).",
        ),
    ] = None,
    stalled_interval_ms: Annotated[
        int | None,
        typer.Option(
            "--stalled-interval-ms", metavar="MS", min=100, max=MAX_STALLED_INTERVAL_MS,
            help="How often to look for stalled jobs (default 30000).",
        ),
    ] = None,
    max_stalled_count: Annotated[
        int | None,
        typer.Option(
            "--max-stalled-count", metavar="N", min=0, max=MAX_STALLED_COUNT,
            help="Override every queue's maxStalledCount (Twenty: 1).",
        ),
    ] = None,
    log_level: Annotated[LogLevel, typer.Option("--log-level", case_sensitive=False, help="Log level.")] = (
        LogLevel.INFO
    ),
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", case_sensitive=False, help="Log lines as text or JSON.")
    ] = LogFormat.TEXT,
    use_uvloop: Annotated[bool, typer.Option("--uvloop/--no-uvloop", help="Use uvloop when installed.")] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", metavar="PORT", min=0, max=65535,
            help="Serve Prometheus /metrics and /healthz on this port.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", metavar="ADDRESS", help="Address --metrics-port listens on.")
    ] = "0.0.0.0",
    processes: Annotated[
        str,
        typer.Option(
            "--processes", "-p", metavar="N|auto",
            help="Worker processes (auto: one per CPU). Each serves the same queues; process i serves "
            "--metrics-port BASE+i. A crashed process is restarted with backoff.",
        ),
    ] = "1",
) -> None:
    """Run workers for the selected queues until SIGTERM/SIGINT (or until empty with --burst)."""
    setup_logging(log_level.value, log_format.value)
    try:
        process_count = resolve_processes(processes)
    except ValueError as exc:
        fail(str(exc))
    settings = settings_from(redis_url, prefix)
    import_modules(import_ or [], builtin_jobs)

    handled = default_registry.queues()
    for name in [*(queue or []), *(exclude_queue or [])]:
        try:
            check_queue_name(name, accepted=handled, how_to_allow=HOW_TO_SERVE_CUSTOM)
        except ConfigError as exc:
            fail(str(exc))
    served = select_queues(
        list(queue) if queue else handled,
        settings.worker_enabled_queues,
        [*settings.worker_excluded_queues, *(exclude_queue or [])],
    )
    try:
        # After --import, so a tracer/meter provider set up by the user's modules is seen.
        extras = build_worker_services(metrics_port, metrics_host=metrics_host)
    except ConfigError as exc:
        fail(str(exc))
    config = WorkerConfig(
        observers=extras.observers,
        services=extras.services,
        queues=served,
        redis_url=settings.queue_redis_url,
        prefix=settings.prefix,
        concurrency=concurrency,
        burst=burst,
        grace_s=grace,
        lock_duration_ms=lock_duration_ms,
        stalled_interval_ms=stalled_interval_ms,
        max_stalled_count=max_stalled_count,
    )
    if process_count > 1:
        raise typer.Exit(_supervise(process_count, grace))
    if use_uvloop:
        _install_uvloop()
    log.info(
        "twenty-jobs %s worker starting on Redis %s, prefix '%s'",
        __version__, redacted_url(settings.queue_redis_url), settings.prefix,
    )
    code = run(run_worker(config), settings=settings)
    log.info("twenty-jobs worker stopped (exit code %d)", code)
    raise typer.Exit(code)


def _supervise(process_count: int, grace_s: float) -> int:
    """Run this same `work` command, less `--processes`, in `process_count` child processes."""
    args = sys.argv[1:]
    child = [sys.executable, "-m", "twenty_jobs.cli", *_without_processes_option(args)]
    log.info("starting %d worker processes", process_count)
    try:
        return run_supervisor(process_count, child, grace_s=grace_s)
    except ValueError as exc:
        fail(str(exc))


def _without_processes_option(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--processes", "-p"):
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()
