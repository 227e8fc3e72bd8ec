"""Fixtures for the ported-job tests. Test modules import the ones they use.

* `core_db`: Twenty's `core.webhook` table shape in a fresh schema of the `test` database, with
  PG_DATABASE_URL / TWENTY_JOBS_CORE_SCHEMA pointing at it; dropped afterwards.
* `receiver`: a started WebhookReceiver.
* `jobs_env`: the job settings every test states explicitly (safe mode OFF so the loopback receiver
  is reachable; tests of the guard turn it back on), with short retry delays.
* `close_smtp_after_each_test` (autouse): closes the kept SMTP connection of the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

# Importing the job modules registers their handlers in the default registry.
import twenty_jobs.jobs.email
import twenty_jobs.jobs.webhook
from tests.jobs_support.receiver import WebhookReceiver
from twenty_jobs.jobs import db
from twenty_jobs.jobs import email as email_job
from twenty_jobs.runtime.worker import WorkerConfig, run_worker

REDIS_URL = os.environ.get("TWENTY_JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_URL = os.environ.get("TWENTY_JOBS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class CoreDb:
    schema: str
    conn: asyncpg.Connection

    async def add_webhook(
        self,
        workspace_id: str,
        target_url: str,
        operations: Sequence[str] = ("*.*",),
        secret: str = "",
        *,
        deleted: bool = False,
        description: str | None = None,
    ) -> str:
        webhook_id = str(uuid.uuid4())
        await self.conn.execute(
            f'INSERT INTO "{self.schema}".webhook (id, "workspaceId", "targetUrl", operations, description, '
            f'secret, "deletedAt") VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END)',
            webhook_id, workspace_id, target_url, list(operations), description, secret, deleted,
        )
        return webhook_id


@pytest.fixture
async def core_db(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CoreDb]:
    schema = f"tj_core_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_URL)
    # The columns of Twenty's WebhookEntity (webhook.entity.ts), camelCase as TypeORM names them.
    await conn.execute(
        f"""
        CREATE SCHEMA "{schema}";
        CREATE TABLE "{schema}".webhook (
            id uuid PRIMARY KEY,
            "workspaceId" uuid NOT NULL,
            "targetUrl" character varying NOT NULL,
            operations text[] NOT NULL DEFAULT '{{*.*}}',
            description character varying,
            secret character varying NOT NULL,
            "createdAt" timestamptz NOT NULL DEFAULT now(),
            "updatedAt" timestamptz NOT NULL DEFAULT now(),
            "deletedAt" timestamptz
        );
        """
    )
    monkeypatch.setenv("PG_DATABASE_URL", PG_URL)
    monkeypatch.setenv("TWENTY_JOBS_CORE_SCHEMA", schema)
    try:
        yield CoreDb(schema, conn)
    finally:
        await db.dispose_engine()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
def jobs_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # No stray .env from the working directory: pydantic-settings reads ./.env.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "false")
    monkeypatch.delenv("OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", raising=False)
    monkeypatch.setenv("WEBHOOK_RETRY_DELAY_MS", "50")
    monkeypatch.delenv("WEBHOOK_TIMEOUT_MS", raising=False)
    for name in ("EMAIL_DRIVER", "EMAIL_SMTP_HOST", "EMAIL_SMTP_PORT", "EMAIL_SMTP_USER", "EMAIL_SMTP_PASSWORD",
                 "EMAIL_SMTP_NO_TLS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as r:
        yield r


@pytest.fixture(autouse=True)
async def close_smtp_after_each_test() -> AsyncIterator[None]:
    yield
    await email_job.close_smtp()


async def run_burst(prefix: str, queues: list[str], timeout: float = 30) -> int:
    """Run the real worker until the queues are empty (delayed retries included)."""
    config = WorkerConfig(redis_url=REDIS_URL, prefix=prefix, queues=queues, burst=True, grace_s=5,
                          install_signal_handlers=False)
    return await asyncio.wait_for(run_worker(config), timeout)


async def job_hash(prefix: str, queue: str, job_id: str) -> dict[str, Any]:
    """The job's Redis hash with JSON fields decoded."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        raw = await client.hgetall(f"{prefix}:{queue}:{job_id}")
    finally:
        await client.aclose()
    out: dict[str, Any] = dict(raw)
    for name in ("data", "opts", "returnvalue", "stacktrace"):
        if name in out:
            out[name] = json.loads(out[name])
    return out


async def job_logs(prefix: str, queue: str, job_id: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return list(await client.lrange(f"{prefix}:{queue}:{job_id}:logs", 0, -1))
    finally:
        await client.aclose()


async def job_ids(prefix: str, queue: str, state: str) -> list[str]:
    """Ids in a zset state (completed, failed, delayed, prioritized), oldest first."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return list(await client.zrange(f"{prefix}:{queue}:{state}", 0, -1))
    finally:
        await client.aclose()


async def raw_job_field(prefix: str, queue: str, job_id: str, name: str) -> str | None:
    """One field of the job hash exactly as stored (e.g. `data`, the JSON text Node would parse)."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        value: str | None = await client.hget(f"{prefix}:{queue}:{job_id}", name)
        return value
    finally:
        await client.aclose()


class MetricsCapture:
    """An OpenTelemetry SDK meter provider with an in-memory reader, injected into the webhook job."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def sums(self, instrument: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """Counter totals by attribute set, for meter `twenty-server`."""
        out: dict[tuple[tuple[str, Any], ...], float] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                if scope.scope.name != "twenty-server":
                    continue
                for metric in scope.metrics:
                    if metric.name != instrument:
                        continue
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        out[key] = out.get(key, 0) + point.value  # type: ignore[union-attr]
        return out

    def total(self, instrument: str) -> float:
        return sum(self.sums(instrument).values())


@pytest.fixture
def otel_metrics(monkeypatch: pytest.MonkeyPatch) -> MetricsCapture:
    capture = MetricsCapture()
    monkeypatch.setattr(twenty_jobs.jobs.webhook, "meter_provider", capture.provider)
    return capture
