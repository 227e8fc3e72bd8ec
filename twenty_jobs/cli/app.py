"""The `twenty-jobs` command line: work, enqueue, and the operations commands.

Errors a user can fix (bad queue name, bad JSON, unreachable Redis) print one line on stderr and
exit non-zero: 2 for bad arguments or configuration, 1 for runtime failures.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from twenty_jobs import __version__
from twenty_jobs.errors import ConfigError, RedisUnavailableError, TwentyJobsError
from twenty_jobs.jobs import BUILTIN_JOB_MODULES
from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.runtime.registry import default_registry
from twenty_jobs.settings import Settings, load_settings
from twenty_jobs.twenty.options import Backoff
from twenty_jobs.twenty.queues import KNOWN_QUEUES, select_queues, unknown_queue_message

app = typer.Typer(
    name="twenty-jobs",
    help="Python workers and producers on the Redis queues of a Twenty CRM server (Node BullMQ).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_RUNTIME = 1

RedisUrlOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: REDIS_QUEUE_URL, REDIS_URL, redis://127.0.0.1:6379)"),
]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", help="BullMQ key prefix (default: TWENTY_JOBS_PREFIX or 'bull')")
]


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    typer.echo(f"twenty-jobs: error: {message}", err=True)
    raise typer.Exit(code)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning our errors into one line and an exit code."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except RedisUnavailableError as exc:
        fail(str(exc), EXIT_RUNTIME)
    except TwentyJobsError as exc:
        fail(str(exc), EXIT_RUNTIME)


def settings_from(redis_url: str | None, prefix: str | None) -> Settings:
    try:
        settings = load_settings(redis_url_option=redis_url, TWENTY_JOBS_PREFIX=prefix)
    except ConfigError as exc:
        fail(str(exc))
    for sentence in settings.unused_settings:
        typer.echo(f"twenty-jobs: warning: {sentence}", err=True)
    return settings


def import_modules(modules: list[str], builtin: bool) -> None:
    for module in [*(BUILTIN_JOB_MODULES if builtin else ()), *modules]:
        try:
            importlib.import_module(module)
        except ConfigError:
            raise
        except ModuleNotFoundError as exc:
            if (exc.name and module.startswith(exc.name)) or exc.name == module:
                fail(f"cannot import handler module '{module}': no such module (is it on PYTHONPATH?)")
            fail(f"cannot import handler module '{module}': {exc}")
        except Exception as exc:
            fail(f"cannot import handler module '{module}': {type(exc).__name__}: {exc}")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"twenty-jobs {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """twenty-jobs: run Twenty's background jobs in Python, side by side with Twenty's Node worker."""


@app.command()
def work(
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Serve this queue (repeatable). Default: every queue with a handler."),
    ] = None,
    exclude_queue: Annotated[
        list[str] | None, typer.Option("--exclude-queue", "-x", help="Do not serve this queue (repeatable).")
    ] = None,
    import_: Annotated[
        list[str] | None, typer.Option("--import", "-i", help="Import this module to load its handlers (repeatable).")
    ] = None,
    builtin_jobs: Annotated[
        bool, typer.Option("--builtin-jobs/--no-builtin-jobs", help="Load the ported Twenty jobs (webhooks, email).")
    ] = True,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Jobs in parallel per queue (default: Twenty's per-queue value)."
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit 0 once the served queues have nothing left to run.")
    ] = False,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds active jobs get to finish after SIGTERM/SIGINT.")
    ] = 30.0,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    lock_duration_ms: Annotated[
        int | None, typer.Option("--lock-duration-ms", min=1000, help="Override every queue's lockDuration.")
    ] = None,
    stalled_interval_ms: Annotated[
        int | None,
        typer.Option("--stalled-interval-ms", min=100, help="How often to look for stalled jobs (default 30000)."),
    ] = None,
    max_stalled_count: Annotated[
        int | None,
        typer.Option("--max-stalled-count", min=0, help="Override every queue's maxStalledCount (Twenty: 1)."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_format: Annotated[str, typer.Option("--log-format", help="text or json.")] = "text",
    use_uvloop: Annotated[bool, typer.Option("--uvloop/--no-uvloop", help="Use uvloop when installed.")] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus /metrics and /healthz on this port."),
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address --metrics-port listens on.")] = "0.0.0.0",
) -> None:
    """Run workers for the selected queues until SIGTERM/SIGINT (or until empty with --burst)."""
    from twenty_jobs.runtime.worker import WorkerConfig, run_worker

    if log_format not in ("text", "json"):
        fail(f"--log-format must be 'text' or 'json', not '{log_format}'")
    setup_logging(log_level, log_format)
    settings = settings_from(redis_url, prefix)
    import_modules(import_ or [], builtin_jobs)

    for name in [*(queue or []), *(exclude_queue or [])]:
        if name not in KNOWN_QUEUES and name not in default_registry.queues():
            fail(unknown_queue_message(name))
    candidates = list(queue) if queue else default_registry.queues()
    served = select_queues(
        candidates, settings.worker_enabled_queues, [*settings.worker_excluded_queues, *(exclude_queue or [])]
    )
    from twenty_jobs.cli.ops import build_work_extras

    try:
        # After --import, so a tracer/meter provider set up by the user's modules is seen.
        observers, services = build_work_extras(metrics_port, metrics_host=metrics_host)
    except ConfigError as exc:
        fail(str(exc))
    config = WorkerConfig(
        observers=observers,
        services=services,
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
    if use_uvloop:
        _install_uvloop()
    code = run_async(run_worker(config))
    raise typer.Exit(code)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text[:80]!r}")


@app.command()
def enqueue(
    queue: Annotated[str, typer.Argument(help="Queue name, e.g. workspace-queue.")],
    name: Annotated[str, typer.Argument(help="Job name (Twenty's processor class name), e.g. CallWebhookJob.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Job data as JSON ('-' reads standard input).")] = "{}",
    id_: Annotated[
        str | None, typer.Option("--id", help="Job id; stored as <id>-<uuid> and deduplicated like Twenty.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", min=0, help="Lower runs first (default: the queue's).")
    ] = None,
    retry_limit: Annotated[int, typer.Option("--retry-limit", min=0, help="Retries after the first attempt.")] = 0,
    delay: Annotated[int | None, typer.Option("--delay", min=0, help="Delay in milliseconds.")] = None,
    backoff: Annotated[
        str | None, typer.Option("--backoff", help="Retry backoff: fixed:MS or exponential:MS[:JITTER].")
    ] = None,
    allow_duplicate: Annotated[bool, typer.Option("--allow-duplicate", help="Skip Twenty's dedupe by id.")] = False,
    custom_queue: Annotated[
        bool, typer.Option("--custom-queue", help="Allow a queue that is not one of Twenty's.")
    ] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Add one job the way Twenty's MessageQueueService does; prints the new job id."""
    from twenty_jobs.runtime.producer import Producer

    settings = settings_from(redis_url, prefix)
    if not custom_queue and queue not in KNOWN_QUEUES:
        fail(unknown_queue_message(queue))
    payload = parse_json_arg(sys.stdin.read() if data == "-" else data, "--data")
    backoff_opt = parse_backoff(backoff) if backoff else None

    async def go() -> str | None:
        async with Producer(settings.queue_redis_url, prefix=settings.prefix, allow_any_queue=True) as producer:
            await producer.ping()
            return await producer.add(
                queue,
                name,
                payload,
                id=id_,
                priority=priority,
                retry_limit=retry_limit,
                delay=delay,
                backoff=backoff_opt,
                allow_duplicate=allow_duplicate,
            )

    try:
        job_id = run_async(go())
    except ValueError as exc:
        fail(str(exc))
    if job_id is None:
        typer.echo(f"deduplicated: a job with id '{id_}' is already waiting on {queue}; nothing added", err=True)
        return
    typer.echo(job_id)


def parse_backoff(text: str) -> Backoff:
    parts = text.split(":")
    try:
        if parts[0] not in ("fixed", "exponential") or len(parts) not in (2, 3):
            raise ValueError
        jitter = float(parts[2]) if len(parts) == 3 else None
        return Backoff(parts[0], int(parts[1]), jitter)  # type: ignore[arg-type]
    except ValueError:
        fail(f"--backoff must look like fixed:1000 or exponential:5000:0.5, not '{text}'")


def _pause_or_resume(queue: str, action: str, force: bool, redis_url: str | None, prefix: str | None) -> None:
    from bullmq import Queue

    from twenty_jobs.connection.client import make_client, ping_or_raise
    from twenty_jobs.wire.compat import refuse_pause_resume

    settings = settings_from(redis_url, prefix)
    if queue not in KNOWN_QUEUES and queue not in default_registry.queues():
        fail(unknown_queue_message(queue))

    async def go() -> None:
        client = make_client(settings.queue_redis_url, what=action)
        try:
            await ping_or_raise(client, settings.queue_redis_url)
            # Node bullmq < 6 on the queue: the proven data loss of mixed pause/resume (bullmq-python.md §5).
            await refuse_pause_resume(client, settings.prefix, queue, action=action, force=force)
            q = Queue(queue, {"connection": client, "prefix": settings.prefix})
            await (q.pause() if action == "pause" else q.resume())
        finally:
            await client.aclose()

    run_async(go())
    typer.echo(f"{queue}: {action}d")


@app.command()
def pause(
    queue: Annotated[str, typer.Argument(help="Queue to pause (workers stop fetching; producers keep adding).")],
    force: Annotated[bool, typer.Option("--force", help="Pause even when Node bullmq < 6 shares the queue.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Pause a queue for every worker, Node and Python. Refused when Node bullmq < 6 shares it."""
    _pause_or_resume(queue, "pause", force, redis_url, prefix)


@app.command()
def resume(
    queue: Annotated[str, typer.Argument(help="Queue to resume.")],
    force: Annotated[bool, typer.Option("--force", help="Resume even when Node bullmq < 6 shares the queue.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Resume a paused queue. Refused when Node bullmq < 6 shares it."""
    _pause_or_resume(queue, "resume", force, redis_url, prefix)


def _register_extra_commands() -> None:
    """Operations commands (status, check, failed, cron, doctor) live in their own module."""
    try:
        ops = importlib.import_module("twenty_jobs.cli.ops")
    except ModuleNotFoundError as exc:
        if exc.name != "twenty_jobs.cli.ops":
            raise
        return
    register: Callable[[typer.Typer], None] = ops.register
    register(app)


_register_extra_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
