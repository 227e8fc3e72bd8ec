"""The `twenty-jobs` command: the root app, one command group per module, and `main()`.

    work.py           work                      run workers
    enqueue.py        enqueue                   add a job as Twenty does
    queue_control.py  pause, resume             queue control (the `queue` group joins here)
    status.py         status                    counts and workers per queue
    check.py          check                     health verdict, exit 0/1
    failed.py         failed list|retry|clean   failed jobs
    cron.py           cron list|add|remove|register
    doctor.py         doctor                    what is wrong or risky, with fixes

Shared: options.py (options and bounds), context.py (settings, modules, connection, the queue-name
rule), inputs.py (JSON data, backoff), output.py (tables, JSON, hints), errors.py (one line + exit).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from twenty_jobs import __version__
from twenty_jobs.cli import check, cron, doctor, enqueue, failed, queue_control, status, work
from twenty_jobs.cli.errors import EXIT_RUNTIME, EXIT_USAGE, error_line

app = typer.Typer(
    name="twenty-jobs",
    help="Python workers and producers on the Redis queues of a Twenty CRM server (Node BullMQ).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: the rich layout prints a type such as `<bool>` after flags that take no value.
    rich_markup_mode=None,
)

app.command("work")(work.work)
app.command("enqueue")(enqueue.enqueue)
app.command("pause")(queue_control.pause)
app.command("resume")(queue_control.resume)
app.command("status")(status.status)
app.command("check")(check.check)
app.add_typer(failed.failed_app, name="failed")
app.add_typer(cron.cron_app, name="cron")
app.command("doctor")(doctor.doctor)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"twenty-jobs {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """twenty-jobs: run Twenty's background jobs in Python, side by side with Twenty's Node worker."""


def main() -> None:
    """The `twenty-jobs` entry point: bad input is one line and exit 2, never a usage block or a
    traceback (a value outside its bounds, an unknown option, a handler module that raises
    ConfigError on import)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        typer.echo(f"twenty-jobs: error: {_usage_message(exc)}", err=True)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        typer.echo("twenty-jobs: aborted", err=True)
        sys.exit(EXIT_RUNTIME)
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        typer.echo(f"twenty-jobs: error: {line[0]}", err=True)
        sys.exit(line[1])
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(exc: typer.TyperException) -> str:
    """Click's own wording ("Invalid value for '--delay': ..."), plus where the help is."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else exc.message
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"{message} (see `{command} --help`)" if command else str(message)
