"""Operations commands: `status`, `check`, `failed`, `cron` and `doctor`; and the pieces
`twenty-jobs work` adds to every worker process (`build_work_extras`).

`twenty_jobs.cli` calls `register(app)` while it is being imported, so this module must not import
`twenty_jobs.cli` at import time: the shared helpers (`fail`, `run_async`, `settings_from`,
`import_modules`) are looked up when a command runs.

Output: rich tables for people, `--json` for scripts. Exit codes as everywhere in the CLI: 2 for
bad arguments (an unknown queue name), 1 for runtime failures (Redis unreachable, unhealthy).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twenty_jobs.connection.client import make_client, ping_or_raise
from twenty_jobs.errors import ConfigError, TwentyJobsError
from twenty_jobs.observability.heartbeat import DEFAULT_STUCK_AFTER_S, Heartbeat, now_ms, read_heartbeats
from twenty_jobs.ops import crons as cron_ops
from twenty_jobs.ops import failed as failed_ops
from twenty_jobs.ops.check import evaluate_health, summary_line, unreachable_report
from twenty_jobs.ops.doctor import run_doctor
from twenty_jobs.ops.findings import Severity
from twenty_jobs.ops.queues import in_display_order
from twenty_jobs.ops.snapshot import discover_queues, ping, queue_exists
from twenty_jobs.ops.status import StatusReport, collect_status
from twenty_jobs.twenty.queues import KNOWN_QUEUES, unknown_queue_message

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from twenty_jobs.runtime.worker import JobObserver, WorkerService
    from twenty_jobs.settings import Settings

RedisUrlOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: REDIS_QUEUE_URL, REDIS_URL, redis://127.0.0.1:6379)"),
]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", help="BullMQ key prefix (default: TWENTY_JOBS_PREFIX or 'bull')")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
QueuesOpt = Annotated[
    list[str] | None, typer.Option("--queue", "-q", help="Only this queue (repeatable).")
]
CustomQueueOpt = Annotated[
    bool, typer.Option("--custom-queue", help="Accept queue names that are neither Twenty's nor present in Redis.")
]
ImportOpt = Annotated[
    list[str] | None, typer.Option("--import", "-i", help="Import this module to load its handlers (repeatable).")
]

failed_app = typer.Typer(help="List, retry and clean failed jobs.", no_args_is_help=True)
cron_app = typer.Typer(help="Job schedulers (Twenty's crons): list, add, remove, register.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the operations commands to the `twenty-jobs` app."""
    app.command("status")(status)
    app.command("check")(check)
    app.command("doctor")(doctor)
    app.add_typer(failed_app, name="failed")
    app.add_typer(cron_app, name="cron")


def build_work_extras(
    metrics_port: int | None, *, metrics_host: str = "0.0.0.0"
) -> tuple[list[JobObserver], list[WorkerService]]:
    """What `twenty-jobs work` adds to WorkerConfig: the heartbeat (observer + service), the
    OpenTelemetry observer, and with a port the `/metrics` + `/healthz` + `/queues` server.

    Call it after the handler modules are imported: the observer exports to OpenTelemetry (and
    makes spans) only if an SDK provider is installed by then. A port that cannot be bound raises
    ConfigError here, before any worker starts."""
    from twenty_jobs.observability.http import MetricsServer
    from twenty_jobs.observability.telemetry import OtelObserver
    from twenty_jobs.ops.queues import QueueStatsEndpoint

    heartbeat = Heartbeat()
    telemetry = OtelObserver(stats=heartbeat)
    observers: list[JobObserver] = [heartbeat, telemetry]
    services: list[WorkerService] = [heartbeat]
    if metrics_port is not None:
        queue_stats = QueueStatsEndpoint()
        server = MetricsServer(metrics_port, host=metrics_host, job_metrics=telemetry.metrics, health=heartbeat,
                               queues=queue_stats.document)
        server.bind()
        services += [queue_stats, server]
    return observers, services


# -- shared plumbing ---------------------------------------------------------------------------


def _cli() -> ModuleType:
    import twenty_jobs.cli.app as cli

    return cli


def _settings(redis_url: str | None, prefix: str | None) -> Settings:
    settings: Settings = _cli().settings_from(redis_url, prefix)
    return settings


def _run(coro: Any) -> Any:
    """Run a command's coroutine; a Redis error after connecting (an ACL refusing a command,
    Redis going away) becomes one line and exit 1, like every other runtime failure."""

    async def guarded() -> Any:
        try:
            return await coro
        except RedisError as exc:
            raise TwentyJobsError(f"Redis error: {str(exc).rstrip('.')}") from None

    return _cli().run_async(guarded())


def _fail(message: str, code: int = 2) -> NoReturn:
    _cli().fail(message, code)
    raise AssertionError("unreachable")  # fail() raises typer.Exit


@asynccontextmanager
async def _connect(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = make_client(settings.queue_redis_url, what="twenty-jobs")
    try:
        await ping_or_raise(client, settings.queue_redis_url)
        yield client
    finally:
        await client.aclose()


async def _check_queue_names(client: aioredis.Redis, prefix: str, names: list[str], custom: bool) -> None:
    """Twenty's queues, and queues that exist in Redis, are accepted; anything else is most likely
    a typo, which would otherwise show an empty queue and hide the real one."""
    for name in names:
        if name in KNOWN_QUEUES or custom or await queue_exists(client, prefix, name):
            continue
        raise ConfigError(unknown_queue_message(name))


def _console() -> Console:
    # Piped output keeps whole lines instead of folding tables at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str))


def _ago(ms: int | None, now: int) -> str:
    if ms is None:
        return "-"
    delta = (now - ms) / 1000
    future = delta < 0
    delta = abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if delta >= size or unit == "s":
            text = f"{delta / size:.0f}{unit}"
            return f"in {text}" if future else f"{text} ago"
    return "-"


class _Progress:
    """A rich progress bar on an interactive stderr, plain `done/total` lines otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.interactive = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        if self.interactive:
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
        return self.update

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.what, total=total)
            self._bar.update(self._task, completed=done, total=total)
        else:
            typer.echo(f"{self.what}: {done}/{total}", err=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- status ------------------------------------------------------------------------------------


_STATUS_COLUMNS = ("waiting", "prioritized", "active", "delayed", "completed", "failed", "paused_jobs")


def _status_table(rows: list[dict[str, Any]], prefix: str) -> Table:
    table = Table(title=f"queues under prefix '{prefix}'", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for col in _STATUS_COLUMNS:
        table.add_column("paused" if col == "paused_jobs" else col, justify="right")
    table.add_column("workers (node/python)", justify="right")
    for row in rows:
        workers = "?" if row["workers"] is None else f"{row['workers']} ({row['node_workers']}/{row['python_workers']})"
        idle_backlog = row["ready"] and not (row["workers"] or row["python_workers"])
        name = escape(row["name"] + (" [paused]" if row["is_paused"] else ""))  # not rich markup
        table.add_row(
            f"[red]{name}[/red]" if idle_backlog else name,
            *[str(row[c]) for c in _STATUS_COLUMNS],
            f"[red]{workers}[/red]" if idle_backlog else workers,
        )
    return table


def status(
    queue: QueuesOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until interrupted.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes with --watch.")
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
    settings = _settings(redis_url, prefix)
    console = _console()

    async def go() -> None:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, queue or [], custom_queue)
            if not watch:
                _show_status(console, await collect_status(client, settings.prefix, queue, now_ms()), json_out)
                return
            await _watch_status(client, settings.prefix, queue, console, json_out, interval, iterations)

    try:
        _run(go())
    except KeyboardInterrupt:
        pass


def _show_status(console: Console, report: StatusReport, json_out: bool) -> None:
    if json_out:
        _print_json(report.as_dict())
    elif not report.rows:
        console.print(
            f"no queues under prefix '{report.prefix}' in this Redis. Is it the Redis Twenty uses "
            "(REDIS_QUEUE_URL, or REDIS_URL), and the right --prefix?"
        )
    else:
        console.print(_status_table(report.rows, report.prefix))
        for finding in report.findings:
            console.print(f"{finding.severity.upper()}: {finding.one_line()}", markup=False)


async def _watch_status(
    client: aioredis.Redis, prefix: str, queues: list[str] | None, console: Console,
    json_out: bool, interval: float, iterations: int,
) -> None:
    # Discovering queues SCANs the keyspace: do it once, then only re-read the counts.
    names = queues or [r["name"] for r in (await collect_status(client, prefix, None, now_ms())).rows]
    count = 0
    if json_out:
        while not iterations or count < iterations:
            _print_json((await collect_status(client, prefix, names, now_ms())).as_dict())
            count += 1
            if not iterations or count < iterations:
                await asyncio.sleep(interval)
        return
    from rich.live import Live

    with Live(console=console, auto_refresh=False) as live:
        while not iterations or count < iterations:
            report = await collect_status(client, prefix, names, now_ms())
            live.update(_status_table(report.rows, prefix), refresh=True)
            count += 1
            if not iterations or count < iterations:
                await asyncio.sleep(interval)


# -- check -------------------------------------------------------------------------------------


def check(
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="A queue that must have a live worker (repeatable). Default: every "
                     "queue with a heartbeat."),
    ] = None,
    this_host: Annotated[
        bool, typer.Option("--this-host", help="Only judge the workers running on this host (container healthcheck).")
    ] = False,
    stuck_after: Annotated[
        float, typer.Option("--stuck-after", min=1, help="Seconds a queue may have jobs ready with none finishing.")
    ] = DEFAULT_STUCK_AFTER_S,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Give up on Redis after this many seconds.")
    ] = 10.0,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Exit 0 when every queue is being worked; otherwise exit 1 and say why, one line per problem.

    Problems: Redis unreachable; a served queue with no live worker; jobs ready with no consumer
    at all (Node or Python); a stale worker heartbeat; workers alive but no job finishing.
    """
    settings = _settings(redis_url, prefix)
    url = settings.queue_redis_url

    async def go() -> Any:
        client = make_client(url, what="twenty-jobs check")
        try:
            async def judge() -> Any:
                await ping(client)
                await _check_queue_names(client, settings.prefix, queue or [], custom_queue)
                return await evaluate_health(
                    client, settings.prefix, queues=queue, host=socket.gethostname() if this_host else None,
                    stuck_after_s=stuck_after,
                )

            try:
                return await asyncio.wait_for(judge(), timeout)
            except TimeoutError:
                return unreachable_report(url, f"no answer within {timeout:g} s")
            except (RedisError, OSError) as exc:
                return unreachable_report(url, str(exc).rstrip(".") or type(exc).__name__)
        finally:
            await client.aclose()

    report = _run(go())
    if json_out:
        _print_json(report.as_dict())
    else:
        for problem in report.problems:
            typer.echo(f"unhealthy: {problem.one_line()}")
        if report.healthy:
            typer.echo(summary_line(report))
        for warning in report.warnings:
            typer.echo(f"warning: {warning.one_line()}")
    raise typer.Exit(0 if report.healthy else 1)


# -- failed ------------------------------------------------------------------------------------


@failed_app.command("list")
def failed_list(
    queue: Annotated[
        str | None, typer.Argument(help="Queue name, e.g. webhook-queue. Default: every queue under the prefix.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many per queue, newest first.")] = 20,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """The most recently failed jobs of QUEUE (or of every queue), with their reasons."""
    settings = _settings(redis_url, prefix)

    async def go() -> list[tuple[str, int, list[failed_ops.FailedJob]]]:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue] if queue else [], custom_queue)
            names = [queue] if queue else in_display_order(await discover_queues(client, settings.prefix))
            found = []
            for name in names:
                total = await failed_ops.count_failed(client, settings.prefix, name)
                if total or queue:
                    found.append((name, total, await failed_ops.list_failed(client, settings.prefix, name, limit)))
            return found

    found = _run(go())
    if json_out:
        if queue:
            _, total, jobs = found[0]
            _print_json({"queue": queue, "total": total, "jobs": [j.as_dict() for j in jobs]})
        else:
            _print_json({"queues": [{"queue": name, "total": total, "jobs": [j.as_dict() for j in jobs]}
                                    for name, total, jobs in found]})
        return
    console = _console()
    if not found or not found[0][2]:
        console.print(f"no failed jobs on {queue}" if queue else "no failed jobs on any queue under this prefix")
        return
    at = now_ms()
    for name, total, jobs in found:
        table = Table(title=f"{name}: {len(jobs)} of {total} failed job(s), newest first", title_justify="left")
        for col in ("id", "name", "attempts", "failed", "workspace", "reason"):
            table.add_column(col, no_wrap=col in ("id", "name"), overflow="fold")
        for j in jobs:
            reason = (j.failed_reason or "").splitlines()[0][:120] if j.failed_reason else ""
            table.add_row(escape(j.id), escape(j.name or "?"), f"{j.attempts_made}/{j.attempts}",
                          _ago(j.failed_at, at), escape(j.workspace_id or ""), escape(reason))
        console.print(table)


@failed_app.command("retry")
def failed_retry(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    job_id: Annotated[str | None, typer.Option("--id", help="Retry this job.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed job of the queue.")] = False,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Jobs moved per Redis script call.")
    ] = failed_ops.DEFAULT_BATCH,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Move failed jobs back to the queue (their attempts count is kept, as Node's retry does)."""
    if (job_id is None) == (not all_):
        _fail("give exactly one of --id ID or --all")
    settings = _settings(redis_url, prefix)

    async def go() -> int:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            if job_id is not None:
                await failed_ops.retry_one(client, settings.prefix, queue, job_id)
                return 1
            with _Progress(f"retrying failed jobs on {queue}") as progress:
                return await failed_ops.retry_all(
                    client, settings.prefix, queue, batch=batch, now_ms=now_ms(), progress=progress
                )

    moved = _run(go())
    if json_out:
        _print_json({"queue": queue, "retried": moved})
    else:
        typer.echo(f"retried {moved} job(s) on {queue}" if job_id is None else f"retried job {job_id} on {queue}")


@failed_app.command("clean")
def failed_clean(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only jobs that failed longer ago than this (30s, 15m, 12h, 7d).")
    ] = "0",
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Jobs deleted per Redis script call.")
    ] = failed_ops.DEFAULT_BATCH,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delete failed jobs (hash, logs and all) for good."""
    try:
        grace = failed_ops.parse_duration_ms(older_than)
    except ConfigError as exc:
        _fail(str(exc))
    settings = _settings(redis_url, prefix)

    async def go() -> int:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            with _Progress(f"cleaning failed jobs on {queue}") as progress:
                return await failed_ops.clean_failed(
                    client, settings.prefix, queue, older_than_ms=grace, batch=batch, now_ms=now_ms(),
                    progress=progress,
                )

    removed = _run(go())
    if json_out:
        _print_json({"queue": queue, "removed": removed})
    else:
        typer.echo(f"removed {removed} failed job(s) from {queue}")


# -- cron --------------------------------------------------------------------------------------


@cron_app.command("list")
def cron_list(
    queue: QueuesOpt = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Job schedulers (and legacy repeatable jobs) with their schedule and next run."""
    settings = _settings(redis_url, prefix)

    async def go() -> list[cron_ops.CronEntry]:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, queue or [], custom_queue)
            names = queue or list(dict.fromkeys([*KNOWN_QUEUES, *await discover_queues(client, settings.prefix)]))
            return await cron_ops.list_crons(client, settings.prefix, names)

    entries = _run(go())
    if json_out:
        _print_json({"crons": [e.as_dict() for e in entries]})
        return
    console = _console()
    if not entries:
        console.print("no job schedulers")
        return
    at = now_ms()
    table = Table(title="job schedulers", title_justify="left")
    for col in ("queue", "id", "job", "schedule", "next run", "runs", "kind"):
        table.add_column(col, no_wrap=col in ("queue", "id"))
    for e in entries:
        kind = "[yellow]legacy repeatable[/yellow]" if e.kind == "legacy" else "scheduler"
        table.add_row(e.queue, e.id, e.name or "?", e.schedule, _ago(e.next_run, at),
                      "-" if e.iterations is None else str(e.iterations), kind)
    console.print(table)


@cron_app.command("add")
def cron_add(
    queue: Annotated[str, typer.Argument(help="Queue name, e.g. cron-queue.")],
    name: Annotated[str, typer.Argument(help="Job name, e.g. CleanOnboardingWorkspacesJob.")],
    pattern: Annotated[str | None, typer.Option("--pattern", help="Cron expression, e.g. '*/10 * * * *'.")] = None,
    every: Annotated[int | None, typer.Option("--every", min=1, help="Repeat every N milliseconds.")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Scheduler id becomes <name>.<job-id>.")] = None,
    data: Annotated[str, typer.Option("--data", "-d", help="Job data as JSON.")] = "{}",
    tz: Annotated[str | None, typer.Option("--tz", help="Time zone of the pattern, e.g. Europe/Paris.")] = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Create or update a job scheduler the way Twenty's addCron does."""
    if (pattern is None) == (every is None):
        _fail("give exactly one of --pattern or --every")
    payload = _cli().parse_json_arg(data, "--data")
    settings = _settings(redis_url, prefix)

    async def go() -> str:
        from twenty_jobs.runtime.producer import Producer

        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await producer.add_cron(queue, name, payload, pattern=pattern, every_ms=every, job_id=job_id, tz=tz)

    scheduler_id = _run(go())
    if json_out:
        _print_json({"queue": queue, "scheduler_id": scheduler_id})
    else:
        typer.echo(f"job scheduler '{scheduler_id}' on {queue}: {pattern or f'every {every} ms'}")


@cron_app.command("remove")
def cron_remove(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    name: Annotated[str, typer.Argument(help="Job name (the scheduler id, without --job-id).")],
    job_id: Annotated[str | None, typer.Option("--job-id", help="For a scheduler created with --job-id.")] = None,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Remove a job scheduler (Twenty's removeCron). Removing one that does not exist is not an error."""
    settings = _settings(redis_url, prefix)

    async def go() -> bool:
        from twenty_jobs.runtime.producer import Producer

        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, [queue], custom_queue)
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await producer.remove_cron(queue, name, job_id=job_id)

    removed = _run(go())
    scheduler_id = f"{name}.{job_id}" if job_id else name
    if json_out:
        _print_json({"queue": queue, "scheduler_id": scheduler_id, "removed": removed})
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
            _print_json({"skipped": True, "reason": f"{cron_ops.DISABLE_ENV}=true", "registered": []})
        else:
            typer.echo(f"cron registration skipped: {cron_ops.DISABLE_ENV} is set")
        return
    from twenty_jobs.runtime.registry import default_registry

    settings = _settings(redis_url, prefix)
    _cli().import_modules(import_ or [], builtin_jobs)

    async def go() -> list[cron_ops.Registration]:
        from twenty_jobs.runtime.producer import Producer

        async with _connect(settings) as client:
            producer = Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True, client=client)
            return await cron_ops.register_crons(producer, default_registry)

    results = _run(go())
    failures = [r for r in results if r.error]
    if json_out:
        _print_json({"skipped": False, "registered": [r.as_dict() for r in results]})
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


# -- doctor ------------------------------------------------------------------------------------


_SEVERITY_STYLE = {Severity.OK: "green", Severity.INFO: "blue", Severity.WARN: "yellow", Severity.ERROR: "red"}


def doctor(
    queue: QueuesOpt = None,
    import_: ImportOpt = None,
    builtin_jobs: Annotated[
        bool, typer.Option("--builtin-jobs/--no-builtin-jobs",
                           help="Also check the ported Twenty jobs' handlers (as `work` would load them).")
    ] = False,
    json_out: JsonOpt = False,
    custom_queue: CustomQueueOpt = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Check Redis and the queues for what breaks Twenty and Python workers, and say what to do.

    Exit 1 when any finding is an error.
    """
    settings = _settings(redis_url, prefix)
    registry = None
    if import_ or builtin_jobs:
        from twenty_jobs.runtime.registry import default_registry

        _cli().import_modules(import_ or [], builtin_jobs)
        registry = default_registry

    async def go() -> Any:
        async with _connect(settings) as client:
            await _check_queue_names(client, settings.prefix, queue or [], custom_queue)
            names = queue or list(dict.fromkeys([
                *[q for q in KNOWN_QUEUES if await queue_exists(client, settings.prefix, q)],
                *await discover_queues(client, settings.prefix),
                *[h.queue for h in await read_heartbeats(client, settings.prefix)],
            ]))
            return await run_doctor(client, settings.prefix, names, registry=registry, at=now_ms())

    report = _run(go())
    if json_out:
        _print_json(report.as_dict())
    else:
        console = _console()
        console.print(f"queues checked: {', '.join(report.queues) or 'none found under this prefix'}")
        for f in report.findings:
            style = _SEVERITY_STYLE[f.severity]
            console.print(f"[{style}]{f.severity.upper():5}[/{style}] {escape(f.message)}")
            if f.fix:
                console.print(f"      [bold]fix:[/bold] {escape(f.fix)}")
        console.print(f"{report.errors} error(s), {report.warnings} warning(s)")
    raise typer.Exit(1 if report.errors else 0)
