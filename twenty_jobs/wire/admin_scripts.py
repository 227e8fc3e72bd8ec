"""Typed calls of the port's queue-control Lua scripts: pause/resume, drain, clean, obliterate.

The keys and arguments are those the port's `Scripts` passes (docs/operations.md, "Queue
control"); the scripts are the port's files, the same as Node bullmq 6.4.0's, run through
`twenty_jobs.wire.lua.run_script`. The mixed-version guard (`compat.refuse_pause_resume`) is the
caller's job: these calls do exactly what the script does.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import run_script, script

# The sets and lists `cleanJobsInSet` can clean, by BullMQ's names.
CLEANABLE_STATES = ("completed", "failed", "delayed", "wait", "active", "paused", "prioritized")
# `obliterate` return codes (obliterate-2.lua).
OBLITERATE_DONE = 0
OBLITERATE_NOT_PAUSED = -1
OBLITERATE_ACTIVE_JOBS = -2


async def pause(client: aioredis.Redis, keys: QueueKeys, *, paused: bool) -> int:
    """Set (`paused`) or clear `meta.paused` (pause-7.lua). A resume also moves a legacy `paused`
    list to `wait`, at most 7000 jobs per call; returns how many are left there (call again)."""
    src, dst = (keys.wait, keys.paused) if paused else (keys.paused, keys.wait)
    return int(await run_script(
        client, script("pause"),
        [src, dst, keys.meta, keys.prioritized, keys.events, keys.delayed, keys.marker],
        ["paused" if paused else "resumed", "1"],
    ) or 0)


async def drain(client: aioredis.Redis, keys: QueueKeys, *, delayed: bool) -> None:
    """Delete every waiting, paused and prioritized job (and delayed ones with `delayed`), except
    the next iteration of each job scheduler (drain-5.lua). Active and finished jobs stay."""
    await run_script(
        client, script("drain"),
        [keys.wait, keys.paused, keys.delayed, keys.prioritized, keys.repeat],
        [keys.job_prefix, "1" if delayed else "0"],
    )


async def clean(client: aioredis.Redis, keys: QueueKeys, state: str, *, before_ms: int, limit: int) -> list[str]:
    """Delete up to `limit` jobs (0: all) of `state` older than `before_ms` (finished, or added, by
    the state's timestamp; cleanJobsInSet-3.lua); returns their ids."""
    key = {
        "completed": keys.completed, "failed": keys.failed, "delayed": keys.delayed, "wait": keys.wait,
        "active": keys.active, "paused": keys.paused, "prioritized": keys.prioritized,
    }.get(state)
    if key is None:
        raise ValueError(f"cannot clean state {state!r}; one of {', '.join(CLEANABLE_STATES)}")
    deleted = await run_script(
        client, script("cleanJobsInSet"), [key, keys.events, keys.repeat], [keys.job_prefix, before_ms, limit, state]
    )
    return [d.decode() if isinstance(d, bytes) else str(d) for d in deleted or []]


async def obliterate(client: aioredis.Redis, keys: QueueKeys, *, count: int, force: bool) -> int:
    """Delete up to `count` jobs and, once none is left, every key of the queue (obliterate-2.lua).
    Returns OBLITERATE_DONE, 1 (call again), OBLITERATE_NOT_PAUSED or OBLITERATE_ACTIVE_JOBS
    (active jobs and not `force`)."""
    reply = await run_script(
        client, script("obliterate"), [keys.meta, keys.job_prefix], [count, "force" if force else ""]
    )
    return int(reply)
