"""Failed jobs: list them, retry one or all, clean old ones.

Retrying and cleaning go through BullMQ's own Lua scripts (the port's `moveJobsToWait` and
`cleanJobsInSet`), `count` jobs per call, so thousands of jobs never block Redis in one script
and the caller can show progress between calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue

from twenty_jobs.errors import ConfigError
from twenty_jobs.runtime.context import workspace_id_of
from twenty_jobs.wire.keys import job_key, meta_key, queue_key

# Jobs moved or deleted per Lua call: big enough to be quick, small enough that one call stays
# in the low milliseconds (Node's `retryJobs` defaults to 1000 too).
DEFAULT_BATCH = 1000

Progress = Callable[[int, int], None]
"""Called after every batch with (done so far, total expected)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """`500ms`, `30s`, `15m`, `12h`, `7d`, `2w` -> milliseconds; `0` is allowed alone."""
    if text.strip() == "0":
        return 0
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"'{text}' is not a duration: use a number and a unit, e.g. 30s, 15m, 12h, 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


@dataclass(slots=True)
class FailedJob:
    id: str
    name: str | None
    failed_reason: str | None
    attempts_made: int
    attempts: int
    failed_at: int | None
    added_at: int | None
    workspace_id: str | None
    stacktrace: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = ["name", "failedReason", "atm", "attemptsMade", "opts", "data", "timestamp", "finishedOn", "stacktrace"]


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


async def count_failed(client: aioredis.Redis, prefix: str, queue: str) -> int:
    return int(await client.zcard(queue_key(prefix, queue, "failed")))


async def list_failed(client: aioredis.Redis, prefix: str, queue: str, limit: int = 20) -> list[FailedJob]:
    """The `limit` most recently failed jobs, newest first."""
    # (job id, score) pairs; list[Any] as redis-py 8's stubs type every form of the reply.
    entries: list[Any] = await client.zrevrange(queue_key(prefix, queue, "failed"), 0, max(0, limit - 1),
                                                withscores=True)
    if not entries:
        return []
    pipe = client.pipeline(transaction=False)
    for job_id, _ in entries:
        pipe.hmget(job_key(prefix, queue, str(job_id)), _FIELDS)
    out = []
    for (job_id, score), values in zip(entries, await pipe.execute(), strict=True):
        name, reason, atm, legacy_atm, opts, data, timestamp, finished_on, stack = values
        opts_obj = _json(opts) or {}
        trace = _json(stack)
        out.append(FailedJob(
            id=str(job_id),
            name=name,
            failed_reason=reason,
            attempts_made=_int(atm) or _int(legacy_atm) or 0,
            attempts=int(opts_obj.get("attempts") or 1) if isinstance(opts_obj, dict) else 1,
            failed_at=_int(finished_on) or int(score),
            added_at=_int(timestamp),
            workspace_id=workspace_id_of(_json(data)),
            stacktrace=[str(line) for line in trace] if isinstance(trace, list) else [],
        ))
    return out


def _queue(client: aioredis.Redis, prefix: str, name: str) -> Queue:
    # The port uses the client as-is and never closes it (we never call Queue.close()).
    return Queue(name, {"connection": client, "prefix": prefix})


async def refuse_if_paused(client: aioredis.Redis, prefix: str, queue: str) -> None:
    """The port's scripts push retried jobs to `wait` even on a paused queue (BullMQ 6 semantics);
    a Node bullmq 5 `resume()` then RENAMEs its `paused` list over `wait` and those jobs vanish
    (bullmq-python.md §5, verified data loss). So never retry into a paused queue."""
    if await client.hexists(meta_key(prefix, queue), "paused"):  # type: ignore[misc]
        raise ConfigError(
            f"queue '{queue}' is paused: retried jobs could be lost when Node bullmq 5 resumes it. "
            f"Resume it first (`twenty-jobs resume {queue}`, or from Twenty/Node when Node bullmq < 6 "
            "shares the queue), then retry."
        )


async def retry_one(client: aioredis.Redis, prefix: str, queue: str, job_id: str) -> None:
    """Move one failed job back to wait (or to prioritized when it has a priority), as Node's
    `job.retry('failed')` does; its attempts count is kept."""
    await refuse_if_paused(client, prefix, queue)
    key = job_key(prefix, queue, job_id)
    pipe = client.pipeline(transaction=False)
    pipe.zscore(queue_key(prefix, queue, "failed"), job_id)
    pipe.hget(key, "opts")
    in_failed, opts = await pipe.execute()
    if in_failed is None:
        exists = await client.exists(key)
        where = "is not in the failed set" if exists else "does not exist"
        raise ConfigError(
            f"job '{job_id}' on queue '{queue}' {where}; `twenty-jobs failed list {queue}` shows the failed ones"
        )
    opts_obj = _json(opts)
    ref = _JobRef(job_id, opts_obj if isinstance(opts_obj, dict) else {})
    await _queue(client, prefix, queue).backend.scripts.reprocessJob(ref, "failed", {})


@dataclass(slots=True)
class _JobRef:
    """What the port's `reprocessJob` reads from a Job (its id and `lifo`), without parsing data."""

    id: str
    opts: dict[str, Any]


async def retry_all(
    client: aioredis.Redis,
    prefix: str,
    queue: str,
    *,
    batch: int = DEFAULT_BATCH,
    now_ms: int,
    progress: Progress | None = None,
) -> int:
    """Move every job that failed before `now_ms` back to wait, `batch` per Lua call (Node's
    `queue.retryJobs`). Jobs that fail again meanwhile are not picked up a second time, so the
    loop always ends. Like Node's, the script puts retried jobs in `wait` even when they carry a
    priority: they run before the queue's prioritized jobs, which is what a retry is for."""
    await refuse_if_paused(client, prefix, queue)
    failed_key = queue_key(prefix, queue, "failed")
    total = int(await client.zcount(failed_key, 0, now_ms))
    scripts = _queue(client, prefix, queue).backend.scripts
    done = 0
    while done < total:
        more = await scripts.retryJobs("failed", batch, now_ms)
        done = total - int(await client.zcount(failed_key, 0, now_ms))
        if progress is not None:
            progress(done, total)
        if not more:
            break
    return done


async def clean_failed(
    client: aioredis.Redis,
    prefix: str,
    queue: str,
    *,
    older_than_ms: int = 0,
    batch: int = DEFAULT_BATCH,
    now_ms: int,
    progress: Progress | None = None,
) -> int:
    """Delete failed jobs that finished more than `older_than_ms` ago (job hash, logs and all),
    `batch` per Lua call (Node's `queue.clean(grace, limit, 'failed')`)."""
    total = int(await client.zcount(queue_key(prefix, queue, "failed"), 0, now_ms - older_than_ms))
    scripts = _queue(client, prefix, queue).backend.scripts
    done = 0
    while done < total:
        removed = await scripts.cleanJobsInSet("failed", older_than_ms, batch)
        done += len(removed)
        if progress is not None:
            progress(min(done, total), total)
        if len(removed) < batch:
            break
    return done
