"""Enqueue jobs the way Twenty's `MessageQueueService` does, so Twenty's Node worker (or ours)
takes them as its own: same job ids, priorities, attempts, retention, dedupe and cron schedulers.

Jobs are written by BullMQ's own add scripts (wire/scripts/queue.py), in one MULTI per call; on a
queue that a Node bullmq < 6 has paused, plain jobs go to the legacy `paused` list, where that
Node's resume finds them (docs/mixed-versions.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

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
from twenty_jobs.wire.keys import DEFAULT_PREFIX, QueueKeys
from twenty_jobs.wire.lua import ClientRunner
from twenty_jobs.wire.scripts.queue import Added, NewJob, add_jobs, get_ranges
from twenty_jobs.wire.scripts.schedulers import InvalidSchedule, Repeat, add_job_scheduler, remove_job_scheduler

log = logging.getLogger("twenty_jobs.producer")


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One job of `add_bulk`: its data, and optionally its job id (used verbatim, as Twenty does)."""

    data: Any
    job_id: str | None = None


class Producer:
    """Adds jobs to BullMQ queues on one Redis.

    Queue names are checked against Twenty's queues, the queues that registered handlers
    serve and those with declared default job options; pass `allow_any_queue=True` for another
    Node BullMQ application's queues. A queue's declared default job options
    (`twenty_jobs.queue_settings(queue, job_defaults=...)`, runtime/job_defaults.py) apply to
    every job added to it, where the call does not say otherwise.
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
        self._runner = ClientRunner(self.client)
        self._keys: dict[str, QueueKeys] = {}

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def ping(self) -> None:
        await ping_or_raise(self.client, self.redis_url)

    def keys(self, name: str) -> QueueKeys:
        """The Redis keys of queue `name` (checked once, see `check_queue`)."""
        keys = self._keys.get(name)
        if keys is None:
            self.check_queue(name)
            keys = self._keys[name] = QueueKeys(self.prefix, name)
        return keys

    def check_queue(self, name: str) -> None:
        check_queue_name(
            name,
            accepted=[*self.registry.queues(), *self.registry.job_defaults],
            allow_custom=self.allow_any_queue,
            how_to_allow="declare a handler for it or create the Producer with allow_any_queue=True",
        )

    async def waiting_job_ids(self, queue: str) -> list[str]:
        """Ids of the queue's waiting and prioritized jobs (what Twenty's dedupe looks at)."""
        return await get_ranges(self._runner, self.keys(queue), DEDUPE_STATES)

    async def add(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        id: str | None = None,
        priority: int | None = None,
        retry_limit: int | None = None,
        delay: int | None = None,
        backoff: Backoff | None = None,
        allow_duplicate: bool = False,
    ) -> str | None:
        """Add one job; returns its id, or None when Twenty's dedupe skipped it (a job with the
        same `id`, or `<id>-<uuid>`, is already waiting). `retry_limit` None: the queue's default
        attempts, else none."""
        options = JobOptions(id=id, priority=priority, retry_limit=retry_limit or 0, delay=delay, backoff=backoff)
        keys = self.keys(queue)
        if id and not allow_duplicate and is_already_waiting(await self.waiting_job_ids(queue), id):
            return None
        opts = self._with_defaults(queue, bullmq_job_opts(queue, options), retry_limit, backoff)
        added = await add_jobs(self.client, keys, [NewJob(name, _stored_data(data), opts)])
        self._note(queue, added)
        return added.ids[0]

    async def add_bulk(
        self,
        queue: str,
        name: str,
        items: Sequence[BulkItem | Any],
        *,
        priority: int | None = None,
        retry_limit: int | None = None,
        delay: int | None = None,
        backoff: Backoff | None = None,
    ) -> list[str]:
        """Add many jobs in one round trip (Twenty's newest `bulkAdd`): items whose job id is
        already waiting are dropped; the ids of the added jobs are returned in order."""
        options = JobOptions(priority=priority, retry_limit=retry_limit or 0, delay=delay, backoff=backoff)
        keys = self.keys(queue)
        bulk = [it if isinstance(it, BulkItem) else BulkItem(it) for it in items]
        if any(it.job_id for it in bulk):
            waiting = await self.waiting_job_ids(queue)
            bulk = [it for it in bulk if not (it.job_id and is_already_waiting(waiting, it.job_id))]
        if not bulk:
            return []
        added = await add_jobs(self.client, keys, [
            NewJob(name, _stored_data(it.data),
                   self._with_defaults(queue, bullmq_job_opts(queue, options, job_id=it.job_id), retry_limit, backoff))
            for it in bulk
        ])
        self._note(queue, added)
        return added.ids

    def _with_defaults(self, queue: str, opts: dict[str, Any], retry_limit: int | None,
                       backoff: Backoff | None) -> dict[str, Any]:
        defaults = self.registry.job_defaults.get(queue)
        if defaults is None:
            return opts
        return defaults.applied_to(opts, attempts_given=retry_limit is not None, backoff_given=backoff is not None)

    def _note(self, queue: str, added: Added) -> None:
        if added.into_legacy_paused:
            log.info("queue '%s' is paused by a Node bullmq below 6: %d job(s) added to its `paused` list, where "
                     "that Node's resume() moves them back to wait", queue, len(added.ids))

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
        scheduler_id = cron_scheduler_id(name, job_id)
        try:
            await add_job_scheduler(
                self._runner, self.keys(queue), scheduler_id, Repeat(pattern=pattern, every=every_ms, tz=tz),
                name=name, data=_stored_data(data), template_opts=cron_template_opts(priority),
            )
        except InvalidSchedule as exc:
            raise ConfigError(f"invalid cron for '{scheduler_id}': {exc}") from None
        return scheduler_id

    async def remove_cron(self, queue: str, name: str, *, job_id: str | None = None) -> bool:
        """Remove the job scheduler (Twenty's `removeCron`); True if one existed."""
        return await remove_job_scheduler(self._runner, self.keys(queue), cron_scheduler_id(name, job_id))


def _stored_data(data: Any) -> Any:
    # Node's JSON.stringify(undefined) data is stored by BullMQ as "{}".
    return {} if data is None else data
