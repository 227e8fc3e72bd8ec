"""Twenty's PostgreSQL, read with SQLAlchemy 2 (async, asyncpg): the tables the ported jobs use.

Settings are Twenty's: `PG_DATABASE_URL` (the same `postgres://user:pass@host:5432/db` Twenty's
server reads). The engine is created on first use and disposed by a shutdown hook, so a worker
that never runs a database job never opens a connection.

`TWENTY_JOBS_CORE_SCHEMA` (default `core`) names the schema of Twenty's core tables; tests point
it at a schema of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Column, DateTime, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from twenty_jobs.errors import TwentyJobsError
from twenty_jobs.redaction import redacted_url, scrub, url_secrets
from twenty_jobs.runtime.hooks import on_shutdown

log = logging.getLogger("twenty_jobs.jobs.db")

DEFAULT_CORE_SCHEMA = "core"
# Twenty's entities live in the `core` schema; tables are declared there and translated to the
# configured schema at execution time (schema_translate_map), so one Table serves every setting.
_DECLARED_SCHEMA = "core"
# Connect quickly or fail the attempt: the job retries, it must not hang on a dead host.
CONNECT_TIMEOUT_S = 10.0


class DatabaseError(TwentyJobsError):
    """PostgreSQL is not configured or not reachable. The message names the setting and the
    server (password redacted) and never carries the password."""


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    pg_database_url: str | None = Field(default=None, alias="PG_DATABASE_URL")
    core_schema: str = Field(default=DEFAULT_CORE_SCHEMA, alias="TWENTY_JOBS_CORE_SCHEMA", min_length=1)


metadata = MetaData()

# core.webhook (engine/metadata-modules/webhook/entities/webhook.entity.ts): TypeORM's camelCase
# property names are the column names, so they are quoted identifiers in SQL.
webhook_table = Table(
    "webhook",
    metadata,
    Column("id", PG_UUID(as_uuid=False), primary_key=True),
    Column("workspaceId", PG_UUID(as_uuid=False), nullable=False),
    Column("targetUrl", Text, nullable=False),
    Column("operations", ARRAY(Text), nullable=False),
    Column("description", Text),
    Column("secret", Text, nullable=False),
    Column("createdAt", DateTime(timezone=True)),
    Column("updatedAt", DateTime(timezone=True)),
    Column("deletedAt", DateTime(timezone=True)),
    schema=_DECLARED_SCHEMA,
)


@dataclass(frozen=True, slots=True)
class Webhook:
    """One row of `core.webhook`. The secret is left out of repr() so it never reaches a log."""

    id: str
    workspace_id: str
    target_url: str
    operations: tuple[str, ...]
    description: str | None = None
    secret: str = field(default="", repr=False)


def asyncpg_url(url: str) -> str:
    """Twenty's `postgres://` / `postgresql://` URL as SQLAlchemy's `postgresql+asyncpg://` URL.

    libpq's `sslmode=` becomes asyncpg's `ssl=` (asyncpg takes the same mode names).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        scheme = "postgresql+asyncpg"
    else:
        raise DatabaseError(
            f"PG_DATABASE_URL must start with postgres:// or postgresql:// (got {redacted_url(url)!r})"
        )
    query = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@dataclass(slots=True)
class _EngineSlot:
    engine: AsyncEngine
    url: str
    loop: asyncio.AbstractEventLoop


_slot: _EngineSlot | None = None
# Engines being disposed in the background (a reference keeps the task alive).
_disposing: set[asyncio.Task[None]] = set()


def load_database_settings() -> DatabaseSettings:
    return DatabaseSettings()


def get_engine(settings: DatabaseSettings | None = None) -> AsyncEngine:
    """The process's engine for `PG_DATABASE_URL`, created on first use.

    A different URL, or a different event loop (an asyncpg pool belongs to one loop), gets a new
    engine; the old one is disposed in the background when its loop still runs.
    """
    global _slot
    settings = settings or load_database_settings()
    raw = settings.pg_database_url
    if not raw:
        raise DatabaseError(
            "PG_DATABASE_URL is not set: this job reads Twenty's core tables; set it to the URL "
            "Twenty's server uses (postgres://user:password@host:5432/db)"
        )
    loop = asyncio.get_running_loop()
    if _slot is not None and _slot.url == raw and _slot.loop is loop:
        return _slot.engine
    if _slot is not None and _slot.loop is loop:
        task = loop.create_task(_slot.engine.dispose())
        _disposing.add(task)
        task.add_done_callback(_disposing.discard)
    try:
        engine = create_async_engine(
            asyncpg_url(raw),
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"timeout": CONNECT_TIMEOUT_S},
        )
    except ValueError:
        # SQLAlchemy's message quotes the part it could not read, which may be part of the
        # password (a `/` or `?` in it cuts the URL early).
        raise DatabaseError(
            f"PG_DATABASE_URL is not a valid URL ({redacted_url(raw)}): percent-encode special characters "
            "in the password (# as %23, / as %2F, ? as %3F, @ as %40)"
        ) from None
    _slot = _EngineSlot(engine, raw, loop)
    on_shutdown(dispose_engine)
    return engine


async def dispose_engine() -> None:
    """Close the engine's connections (registered as a worker shutdown hook)."""
    global _slot
    slot, _slot = _slot, None
    if slot is not None and slot.loop is asyncio.get_running_loop():
        await slot.engine.dispose()


def describe_db_error(exc: BaseException, url: str | None) -> str:
    """One line naming the setting, the server (no password) and the driver's reason."""
    where = redacted_url(url) if url else "<unset>"
    reason: BaseException = exc
    orig = getattr(exc, "orig", None)
    if orig is not None:
        # SQLAlchemy wraps the DBAPI error, whose cause is asyncpg's own (better-named) exception.
        reason = orig.__cause__ if isinstance(orig.__cause__, Exception) else orig
    text = " ".join(str(reason).split()) or type(reason).__name__
    if url:
        # Every form the password may take in the URL (see twenty_jobs/redaction.py).
        text = scrub(text, url_secrets(url))
    return f"PostgreSQL at {where} (PG_DATABASE_URL) failed: {type(reason).__name__}: {text[:300]}"


async def webhooks_for(
    workspace_id: str, operations: Sequence[str], *, settings: DatabaseSettings | None = None
) -> list[Webhook]:
    """The workspace's webhooks subscribed to any of `operations`, soft-deleted ones excluded.

    Twenty's older `webhookService.findByOperations` asked the same of `core.webhook`; the newest
    reads the same rows from its workspace cache (call-webhook-jobs.job.ts @ 058aa939).
    """
    settings = settings or load_database_settings()
    try:
        UUID(workspace_id)
    except ValueError:
        return []  # workspaceId is a uuid column: no row can match, and asyncpg would refuse it
    t = webhook_table
    query = (
        select(t.c.id, t.c.workspaceId, t.c.targetUrl, t.c.operations, t.c.description, t.c.secret)
        .where(t.c.workspaceId == workspace_id)
        .where(t.c.deletedAt.is_(None))
        .where(t.c.operations.overlap(list(operations)))
        .order_by(t.c.createdAt, t.c.id)
    )
    engine = get_engine(settings)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(
                schema_translate_map={_DECLARED_SCHEMA: settings.core_schema}
            )
            rows = (await conn.execute(query)).all()
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise DatabaseError(describe_db_error(exc, settings.pg_database_url)) from None
    return [_webhook(row._mapping) for row in rows]


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=str(row["id"]),
        workspace_id=str(row["workspaceId"]),
        target_url=row["targetUrl"],
        operations=tuple(row["operations"] or ()),
        description=row["description"],
        secret=row["secret"] or "",
    )
