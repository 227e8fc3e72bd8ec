"""Webhook delivery that is kind to receivers: one HTTP client with keep-alive per worker process,
and at most WEBHOOK_MAX_CONNECTIONS_PER_HOST requests at a time to one receiving host.

Twenty's CallWebhookJob opens a client per job and POSTs its (up to) 20 payloads at once
(docs/webhook-email.md). Against a small receiver that is a burst of new connections per job:
three jobs against Python's stdlib HTTP server with a listen backlog of 5 got connection resets
and retries. Here the worker process opens one client when it starts (a lifecycle hook,
runtime/lifecycle.py; handlers reach it as `ctx.worker.resource(...)`) and closes it when it stops;
its connections are kept alive between payloads and jobs (jobs/http_pool.py keeps that safe with
the SSRF guard), and a semaphore per host name lets at most N payloads of all the process's jobs
be in flight to one host, so at most N connections to it are open (the cap holds per worker
process; `--processes 4` means up to 4N).

Waiting for a free slot does not count against a payload's timeout (WEBHOOK_TIMEOUT_MS): only
the request itself does. Redirect hops to other hosts run in the slot of the first host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from twenty_jobs.jobs import outbound
from twenty_jobs.jobs.config import load
from twenty_jobs.runtime.lifecycle import WorkerContext

# `ctx.worker.resources` key of the process's Deliveries.
RESOURCE = "webhook-deliveries"
DEFAULT_MAX_CONNECTIONS_PER_HOST = 5


class DeliverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    max_connections_per_host: int = Field(
        default=DEFAULT_MAX_CONNECTIONS_PER_HOST, alias="WEBHOOK_MAX_CONNECTIONS_PER_HOST", ge=1, le=1000
    )


@dataclass
class _Host:
    slots: asyncio.Semaphore
    users: int = 0


@dataclass
class HostLimiter:
    """At most `per_host` holders of `slot(host)` at a time for each host name."""

    per_host: int
    _hosts: dict[str, _Host] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _Host(asyncio.Semaphore(self.per_host))
        entry.users += 1
        try:
            async with entry.slots:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:  # nobody holds or waits: forget the host (bounded memory)
                del self._hosts[host]


@dataclass
class Deliveries:
    """The worker process's webhook client and its per-host cap."""

    client: httpx.AsyncClient
    hosts: HostLimiter

    async def aclose(self) -> None:
        await self.client.aclose()


def open_deliveries() -> Deliveries:
    """A client and a cap, from WEBHOOK_MAX_CONNECTIONS_PER_HOST (a bad value is a ConfigError
    naming it, which stops the worker's start)."""
    per_host = load(DeliverySettings).max_connections_per_host
    return Deliveries(outbound.new_client(keepalive_per_host=per_host), HostLimiter(per_host))


async def close_for_worker(worker: WorkerContext) -> None:
    """Shutdown hook: close the client (and its kept-alive connections)."""
    deliveries = worker.resources.pop(RESOURCE, None)
    if isinstance(deliveries, Deliveries):
        await deliveries.aclose()
