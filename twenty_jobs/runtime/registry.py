"""Which Python handler serves which (queue, job name).

    @twenty_jobs.job(queue="webhook-queue", name="CallWebhookJob")
    async def call_webhook(data: list[WebhookPayload], ctx: JobContext) -> None: ...

When the `data` parameter is annotated with a pydantic model (or any type pydantic can validate,
such as `list[Model]`), the stored data is validated first and a mismatch fails the job for good
with the validation message. `dict`, `list`, `Any` or no annotation pass the data as stored.

A plain `def` handler is a blocking one: it runs on a thread of the queue worker's pool, with a
BlockingJobContext (runtime/threads.py, runtime/blocking.py).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from twenty_jobs.errors import ConfigError, PermanentJobError
from twenty_jobs.runtime.config import QueueSettings
from twenty_jobs.runtime.job_defaults import JobDefaults
from twenty_jobs.runtime.lifecycle import LifecycleHook

# `async def handler(data[, ctx])`, awaited on the loop, or `def handler(data[, ctx])`, run on a thread.
Handler = Callable[..., Any]
HandlerT = TypeVar("HandlerT", bound=Handler)

# Annotations that mean "give me the data as stored": no validation.
_PASSTHROUGH: tuple[Any, ...] = (inspect.Parameter.empty, Any, dict, list, object, dict, list)


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A cron a Python handler declares; `twenty-jobs cron register` turns it into a job scheduler."""

    pattern: str | None = None
    every_ms: int | None = None
    job_id: str | None = None
    data: Any = None


@dataclass(slots=True)
class JobHandler:
    queue: str
    name: str
    func: Handler
    adapter: TypeAdapter[Any] | None
    cron: CronSpec | None = None
    wants_ctx: bool = True
    # A plain `def`: run on a thread with `call_blocking`, not awaited on the loop.
    blocking: bool = False

    def parse(self, data: Any) -> Any:
        """The handler's view of the stored data; raises PermanentJobError on a mismatch."""
        if self.adapter is None:
            return data
        try:
            return self.adapter.validate_python(data)
        except ValidationError as exc:
            raise PermanentJobError(
                f"invalid data for job '{self.name}' on queue '{self.queue}': {summarize_validation(exc)}"
            ) from None

    async def __call__(self, data: Any, ctx: Any) -> Any:
        parsed = self.parse(data)
        if self.wants_ctx:
            return await self.func(parsed, ctx)
        return await self.func(parsed)

    def call_blocking(self, data: Any, ctx: Any) -> Any:
        """A blocking handler's call (on its thread)."""
        parsed = self.parse(data)
        return self.func(parsed, ctx) if self.wants_ctx else self.func(parsed)


def summarize_validation(exc: ValidationError, limit: int = 5) -> str:
    """One line: `path: message; path: message` for the first few errors."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "data"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more error(s)")
    return "; ".join(parts)


@dataclass
class Registry:
    """An ordered map of (queue, name) -> handler, the worker lifecycle hooks of the modules
    that registered them (runtime/lifecycle.py), and what they declared per queue: worker
    settings and default job options (`twenty_jobs.queue_settings`, runtime/queue_options.py)."""

    handlers: dict[tuple[str, str], JobHandler] = field(default_factory=dict)
    queue_settings: dict[str, QueueSettings] = field(default_factory=dict)
    job_defaults: dict[str, JobDefaults] = field(default_factory=dict)
    startup_hooks: list[LifecycleHook] = field(default_factory=list)
    shutdown_hooks: list[LifecycleHook] = field(default_factory=list)

    def on_startup(self, hook: LifecycleHook) -> LifecycleHook:
        """Run `hook(worker_context)` once when a worker starts, before its first job."""
        if hook not in self.startup_hooks:
            self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: LifecycleHook) -> LifecycleHook:
        """Run `hook(worker_context)` once when a worker stops, after its last job."""
        if hook not in self.shutdown_hooks:
            self.shutdown_hooks.append(hook)
        return hook

    def add(self, handler: JobHandler) -> None:
        key = (handler.queue, handler.name)
        existing = self.handlers.get(key)
        if existing is not None and existing.func is not handler.func:
            raise ConfigError(
                f"two handlers for job '{handler.name}' on queue '{handler.queue}': "
                f"{_qualname(existing.func)} and {_qualname(handler.func)}"
            )
        self.handlers[key] = handler

    def get(self, queue: str, name: str) -> JobHandler | None:
        return self.handlers.get((queue, name))

    def queues(self) -> list[str]:
        return list(dict.fromkeys(q for q, _ in self.handlers))

    def names(self, queue: str) -> list[str]:
        return [n for q, n in self.handlers if q == queue]

    def for_queue(self, queue: str) -> dict[str, JobHandler]:
        return {n: h for (q, n), h in self.handlers.items() if q == queue}

    def crons(self) -> list[JobHandler]:
        return [h for h in self.handlers.values() if h.cron is not None]

    def remove(self, queue: str, name: str) -> None:
        self.handlers.pop((queue, name), None)


default_registry = Registry()


def on_startup(hook: LifecycleHook) -> LifecycleHook:
    """Decorator: a startup hook of every worker that serves the default registry."""
    return default_registry.on_startup(hook)


def on_shutdown(hook: LifecycleHook) -> LifecycleHook:
    """Decorator: a shutdown hook of every worker that serves the default registry."""
    return default_registry.on_shutdown(hook)


def _qualname(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _data_adapter(func: Handler) -> TypeAdapter[Any] | None:
    params = list(inspect.signature(func).parameters.values())
    if not params:
        raise ConfigError(f"handler {_qualname(func)} must accept the job data as its first parameter")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolved forward references
        raise ConfigError(f"cannot read the type hints of handler {_qualname(func)}: {exc}") from None
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    if annotation in _PASSTHROUGH or (typing.get_origin(annotation) in (dict, list) and not typing.get_args(
        annotation
    )):
        return None
    if typing.get_origin(annotation) is dict and typing.get_args(annotation)[1:] == (Any,):
        return None
    return TypeAdapter(annotation)


def job(
    queue: str,
    name: str | None = None,
    *,
    cron: str | None = None,
    every_ms: int | None = None,
    cron_job_id: str | None = None,
    cron_data: Any = None,
    registry: Registry | None = None,
) -> Callable[[HandlerT], HandlerT]:
    """Register `async def handler(data, ctx)` for job `name` (default: the function name) on `queue`.
    A plain `def handler(data, ctx)` is run on a thread (blocking or CPU-bound work).

    `cron`/`every_ms` declare a schedule that `twenty-jobs cron register` installs as a BullMQ
    job scheduler (id = name, or `<name>.<cron_job_id>`), as Twenty's `cron:*` commands do.
    """
    if cron is not None and every_ms is not None:
        raise ConfigError("give either cron= or every_ms=, not both")

    def register(func: HandlerT) -> HandlerT:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ConfigError(f"handler {_qualname(func)} is a generator: make it return its result (def or async def)")
        n_params = len(inspect.signature(func).parameters)
        spec = None
        if cron is not None or every_ms is not None:
            spec = CronSpec(pattern=cron, every_ms=every_ms, job_id=cron_job_id, data=cron_data)
        handler = JobHandler(
            queue=queue,
            name=name or func.__name__,
            func=func,
            adapter=_data_adapter(func),
            cron=spec,
            wants_ctx=n_params >= 2,
            blocking=not inspect.iscoroutinefunction(func),
        )
        (registry or default_registry).add(handler)
        return func

    return register
