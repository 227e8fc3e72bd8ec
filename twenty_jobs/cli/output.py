"""How commands print: rich tables for people, JSON for scripts, progress on stderr, and fix
hints that repeat the `--prefix` in use."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress as RichProgress
from rich.progress import TaskID

from twenty_jobs.wire.keys import DEFAULT_PREFIX

# Width of piped output when COLUMNS is not set: whole lines rather than tables folded at 80.
PIPED_WIDTH = 200

__all__ = ["Progress", "ago", "carry_prefix", "console", "escape", "print_json", "shorten"]


def console() -> Console:
    """A console for stdout: the terminal's width, else COLUMNS, else PIPED_WIDTH when piped."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        width: int | None = int(columns)
    else:
        width = None if sys.stdout.isatty() else PIPED_WIDTH
    return Console(width=width, highlight=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str))


def ago(ms: int | None, now: int) -> str:
    """`5m ago` / `in 2h` for a timestamp in ms; `-` for none."""
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


def shorten(text: str, limit: int) -> str:
    """The first line of `text`, cut at a word boundary to at most `limit` characters with `…`."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if len(first) <= limit:
        return first
    cut = first[: limit - 1]
    space = cut.rfind(" ")
    # A single very long word (a URL, a path) is cut where it is, rather than left empty.
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


# Hints quote commands in backticks: "`twenty-jobs work --queue x`".
_HINTED_COMMAND = re.compile(r"`(twenty-jobs [^`]*)`")


def carry_prefix(text: str, prefix: str) -> str:
    """Add `--prefix P` to every quoted `twenty-jobs ...` command in a hint when P is not the
    default, so the fix works as pasted for the queues the user is looking at."""
    if prefix == DEFAULT_PREFIX:
        return text

    def add(match: re.Match[str]) -> str:
        command = match.group(1)
        if " --prefix" in command:
            return match.group(0)
        return f"`{command} --prefix {prefix}`"

    return _HINTED_COMMAND.sub(add, text)


class Progress:
    """A rich progress bar on an interactive stderr, plain `what: done/total` lines otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        if sys.stderr.isatty():
            self._bar = RichProgress(console=Console(stderr=True), transient=True)
            self._bar.start()
        return self.update

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            typer.echo(f"{self.what}: {done}/{total}", err=True)
            return
        if self._task is None:
            self._task = self._bar.add_task(self.what, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
