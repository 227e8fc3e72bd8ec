"""Process-wide shutdown hooks for resources a job creates on first use (a database engine, an
SMTP connection), where no worker context is at hand.

A job module registers `on_shutdown(close_engine)`; the worker awaits every hook once, after the
last job has finished and after the worker's own shutdown hooks, in reverse order of
registration. For resources made when the worker starts, prefer the lifecycle hooks with a
`WorkerContext` (runtime/lifecycle.py: `twenty_jobs.on_startup` / `twenty_jobs.on_shutdown`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("twenty_jobs.runtime.hooks")

Hook = Callable[[], Awaitable[None]]
_shutdown_hooks: list[Hook] = []


def on_shutdown(hook: Hook) -> Hook:
    """Register `hook` to run when a worker process stops (usable as a decorator)."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)
    return hook


async def run_shutdown_hooks() -> None:
    for hook in reversed(_shutdown_hooks):
        try:
            await hook()
        except Exception:  # a failing hook must not stop the others
            log.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
