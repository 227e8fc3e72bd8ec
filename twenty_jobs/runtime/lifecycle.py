"""A worker process's lifecycle, as in arq and saq: `on_startup` hooks run once before the first
job, `on_shutdown` hooks once after the last, each with the process's `WorkerContext`, which
handlers reach as `ctx.worker`. Shared resources (one HTTP client with keep-alive, one database
engine) are made in a startup hook and kept in `worker.resources`, instead of module globals:

    @twenty_jobs.on_startup
    async def open_http(worker: twenty_jobs.WorkerContext) -> None:
        worker.resources["http"] = httpx.AsyncClient()

    @twenty_jobs.on_shutdown
    async def close_http(worker: twenty_jobs.WorkerContext) -> None:
        await worker.resource("http", httpx.AsyncClient).aclose()

    @twenty_jobs.job(queue="webhook-queue", name="PingJob")
    async def ping(data: dict, ctx: twenty_jobs.JobContext) -> None:
        await ctx.worker.resource("http", httpx.AsyncClient).get(data["url"])
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from twenty_jobs.runtime.producer import Producer

log = logging.getLogger("twenty_jobs.runtime.lifecycle")

T = TypeVar("T")

LifecycleHook = Callable[["WorkerContext"], Awaitable[None]]


@dataclass(slots=True)
class WorkerContext:
    """One per worker process: where it runs, what it serves, and the resources its hooks made."""

    worker_id: str
    redis_url: str
    prefix: str
    queues: list[str]
    producer: Producer
    resources: dict[str, Any] = field(default_factory=dict)

    def resource(self, name: str, kind: type[T]) -> T:
        """`resources[name]`, checked to be a `kind`; raises LookupError naming the hook to write
        when no startup hook made it."""
        try:
            value = self.resources[name]
        except KeyError:
            raise LookupError(
                f"no worker resource '{name}': create it in an on_startup hook (worker.resources['{name}'] = ...)"
            ) from None
        if not isinstance(value, kind):
            raise TypeError(f"worker resource '{name}' is a {type(value).__name__}, not a {kind.__name__}")
        return value


async def run_startup(hooks: Sequence[LifecycleHook], worker: WorkerContext) -> None:
    """Run the startup hooks in order; the first that raises stops the start (and is raised)."""
    for hook in hooks:
        await hook(worker)


async def run_shutdown(hooks: Sequence[LifecycleHook], worker: WorkerContext) -> None:
    """Run the shutdown hooks in reverse order; one that raises is logged, the others still run."""
    for hook in reversed(hooks):
        try:
            await hook(worker)
        except Exception:
            log.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))
