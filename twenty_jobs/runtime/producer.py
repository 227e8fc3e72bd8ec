"""Enqueue jobs the way Twenty's `MessageQueueService` does, so Twenty's Node worker (or ours)
takes them as its own: same job ids, priorities, attempts, retention, dedupe and cron schedulers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue

from twenty_jobs.connection.client import make_client, ping_or_raise
from twenty_jobs.errors import ConfigError
from twenty_jobs.runtime.registry import Registry, default_registry
from twenty_jobs.settings import Settings, load_settings
from twenty_jobs.twenty.options import (
    DEDUPE_STATES,
    Backoff,
    JobOptions,
    bullmq_job_opts,
    cron_scheduler_id,
    cron_template_opts,
    is_already_waiting,
)
from twenty_jobs.twenty.queues import check_queue_name
from twenty_jobs.wire.keys import DEFAULT_PREFIX


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One job of `add_bulk`: its data, and optionally its job id (used verbatim, as Twenty does)."""

    data: Any
    job_id: str | None = None


class Producer:
    """Adds jobs to BullMQ queues on one Redis.

    Queue names are checked against Twenty's queues and the queues that registered handlers
    serve; pass `allow_any_queue=True` for another Node BullMQ application's queues.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str | None = None,
        allow_any_queue: bool = False,
        registry: Registry | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        settings: Settings | None = None
        if redis_url is None or prefix is None:
            settings = load_settings()
        self.redis_url = redis_url or (settings.queue_redis_url if settings else "")
        self.prefix = prefix or (settings.prefix if settings else DEFAULT_PREFIX)
        self.allow_any_queue = allow_any_queue
        self.registry = registry or default_registry
        self._owns_client = client is None
        self.client = client or make_client(self.redis_url, what="producer")
        self._queues: dict[str, Queue] = {}

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def ping(self) -> None:
        await ping_or_raise(self.client, self.redis_url)

    def queue(self, name: str) -> Queue:
        """The bullmq Queue for `name` on this producer's connection (created once)."""
        q = self._queues.get(name)
        if q is None:
            self.check_queue(name)
            # The port uses a client instance as-is; it never closes it because we never call
            # Queue.close() (the producer owns the connection).
            q = Queue(name, {"connection": self.client, "prefix": self.prefix})
            self._queues[name] = q
        return q

    def check_queue(self, name: str) -> None:
        check_queue_name(
            name,
            accepted=self.registry.queues(),
            allow_custom=self.allow_any_queue,
            how_to_allow="declare a handler for it or create the Producer with allow_any_queue=True",
        )

    async def waiting_job_ids(self, queue: str) -> list[str]:
        """Ids of the queue's waiting and prioritized jobs (what Twenty's dedupe looks at)."""
        ids: list[str] = await self.queue(queue).scripts.getRanges(list(DEDUPE_STATES), 0, -1)
        return ids

    async def add(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        id: str | None = None,
        priority: int | None = None,
        retry_limit: int = 0,
        delay: int | None = None,
        backoff: Backoff | None = None,
        allow_duplicate: bool = False,
    ) -> str | None:
        """Add one job; returns its id, or None when Twenty's dedupe skipped it (a job with the
        same `id`, or `<id>-<uuid>`, is already waiting)."""
        options = JobOptions(id=id, priority=priority, retry_limit=retry_limit, delay=delay, backoff=backoff)
        q = self.queue(queue)
        if id and not allow_duplicate and is_already_waiting(await self.waiting_job_ids(queue), id):
            return None
        job = await q.add(name, _stored_data(data), bullmq_job_opts(queue, options))
        return str(job.id)

    async def add_bulk(
        self,
        queue: str,
        name: str,
        items: Sequence[BulkItem | Any],
        *,
        priority: int | None = None,
        retry_limit: int = 0,
        delay: int | None = None,
        backoff: Backoff | None = None,
    ) -> list[str]:
        """Add many jobs in one round trip (Twenty's newest `bulkAdd`): items whose job id is
        already waiting are dropped; the ids of the added jobs are returned in order."""
        options = JobOptions(priority=priority, retry_limit=retry_limit, delay=delay, backoff=backoff)
        q = self.queue(queue)
        bulk = [it if isinstance(it, BulkItem) else BulkItem(it) for it in items]
        if any(it.job_id for it in bulk):
            waiting = await self.waiting_job_ids(queue)
            bulk = [it for it in bulk if not (it.job_id and is_already_waiting(waiting, it.job_id))]
        if not bulk:
            return []
        jobs = await q.addBulk(
            [
                {"name": name, "data": _stored_data(it.data),
                 "opts": bullmq_job_opts(queue, options, job_id=it.job_id)}
                for it in bulk
            ]
        )
        return [str(j.id) for j in jobs]

    async def add_cron(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        pattern: str | None = None,
        every_ms: int | None = None,
        job_id: str | None = None,
        priority: int | None = None,
        tz: str | None = None,
    ) -> str:
        """Create or update the BullMQ job scheduler Twenty's `addCron` would (id = name, or
        `<name>.<job_id>`); returns the scheduler id."""
        if (pattern is None) == (every_ms is None):
            raise ConfigError("a cron needs exactly one of pattern= (cron expression) or every_ms=")
        repeat: dict[str, Any] = {"pattern": pattern} if pattern else {"every": every_ms}
        if tz:
            repeat["tz"] = tz
        scheduler_id = cron_scheduler_id(name, job_id)
        try:
            await self.queue(queue).upsertJobScheduler(
                scheduler_id, repeat, name, _stored_data(data), cron_template_opts(priority)
            )
        except ValueError as exc:  # croniter and the port raise ValueError subclasses for bad patterns
            raise ConfigError(f"invalid cron for '{scheduler_id}': {exc}") from None
        return scheduler_id

    async def remove_cron(self, queue: str, name: str, *, job_id: str | None = None) -> bool:
        """Remove the job scheduler (Twenty's `removeCron`); True if one existed."""
        removed = await self.queue(queue).removeJobScheduler(cron_scheduler_id(name, job_id))
        return removed == 0 or removed is True


def _stored_data(data: Any) -> Any:
    # Node's JSON.stringify(undefined) data is stored by BullMQ as "{}".
    return {} if data is None else data
