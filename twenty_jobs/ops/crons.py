"""Cron jobs: BullMQ job schedulers (what Twenty's `addCron` creates) and the legacy repeatable
jobs older Twenty releases left behind.

Both live in the queue's `repeat` sorted set (member = id, score = next run in ms) with a
`repeat:<id>` hash. Telling them apart matters: the Python port treats every entry as a job
scheduler, so a legacy repeatable advanced by a Python worker loses its data or silently stops
(docs/bullmq-wire.md, "Job schedulers"). Node >= 5.76.1 decides by probing the hash for `ic` (iteration count), but
Twenty's 5.40.0 only writes `ic` after the first iteration, so we also accept a template
(`opts`/`data`, which Twenty's addCron always stores) and look at the member's shape: a legacy
hash-keyed repeatable is an md5 hex digest, an older one `name:id:endDate:tz:pattern`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.errors import TwentyJobsError
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import JobHandler, Registry
from twenty_jobs.twenty.options import cron_scheduler_id
from twenty_jobs.wire.compat import is_legacy_repeatable
from twenty_jobs.wire.keys import queue_key

# Twenty's docker entrypoint skips `cron:register:all` when this is "true".
DISABLE_ENV = "DISABLE_CRON_JOBS_REGISTRATION"


@dataclass(slots=True)
class CronEntry:
    queue: str
    id: str
    kind: str  # "scheduler" or "legacy"
    name: str | None
    pattern: str | None
    every_ms: int | None
    tz: str | None
    next_run: int | None
    iterations: int | None
    data: Any = None

    @property
    def schedule(self) -> str:
        if self.pattern:
            return self.pattern + (f" ({self.tz})" if self.tz else "")
        if self.every_ms:
            return f"every {self.every_ms} ms"
        return "?"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schedule"] = self.schedule
        return out


async def list_crons(client: aioredis.Redis, prefix: str, queues: list[str]) -> list[CronEntry]:
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrange(queue_key(prefix, queue, "repeat"), 0, -1, withscores=True)
    members = await pipe.execute()
    pairs = [(queue, str(member), int(score)) for queue, entries in zip(queues, members, strict=True)
             for member, score in entries]
    if not pairs:
        return []
    pipe = client.pipeline(transaction=False)
    for queue, member, _ in pairs:
        pipe.hgetall(queue_key(prefix, queue, f"repeat:{member}"))
    out = []
    for (queue, member, score), fields in zip(pairs, await pipe.execute(), strict=True):
        legacy = is_legacy_repeatable(member, fields)
        name = fields.get("name")
        pattern = fields.get("pattern")
        tz = fields.get("tz")
        if legacy and not fields:
            # `name:id:endDate:tz:pattern` (the pattern itself may contain colons).
            parts = member.split(":")
            name = parts[0] or None
            tz = (parts[3] if len(parts) > 3 else "") or None
            pattern = ":".join(parts[4:]) or None
        data: Any = None
        if fields.get("data"):
            try:
                data = json.loads(fields["data"])
            except ValueError:
                data = fields["data"]
        out.append(CronEntry(
            queue=queue, id=member, kind="legacy" if legacy else "scheduler", name=name, pattern=pattern,
            every_ms=int(fields["every"]) if fields.get("every") else None, tz=tz, next_run=score,
            iterations=int(fields["ic"]) if fields.get("ic") else None, data=data,
        ))
    return out


def registration_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("true", "1", "yes")


@dataclass(slots=True)
class Registration:
    queue: str
    name: str
    scheduler_id: str
    schedule: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def register_crons(producer: Producer, registry: Registry) -> list[Registration]:
    """Upsert a job scheduler for every cron a handler declares (Twenty's `cron:register:all`):
    each is independent, a failure is recorded and the rest still run."""
    out = []
    for handler in registry.crons():
        out.append(await _register(producer, handler))
    return out


async def _register(producer: Producer, handler: JobHandler) -> Registration:
    spec = handler.cron
    assert spec is not None
    schedule = spec.pattern or f"every {spec.every_ms} ms"
    reg = Registration(handler.queue, handler.name, cron_scheduler_id(handler.name, spec.job_id), schedule)
    try:
        reg.scheduler_id = await producer.add_cron(
            handler.queue, handler.name, spec.data, pattern=spec.pattern, every_ms=spec.every_ms, job_id=spec.job_id
        )
    except TwentyJobsError as exc:
        reg.error = str(exc)
    return reg
