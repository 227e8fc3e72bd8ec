"""A queue's rate limit, as Node bullmq keeps it (docs/any-bullmq-app.md, "The rate limiter").

The limit lives in one key per queue, `<prefix>:<queue>:limiter`: a counter of job starts that
every fetching script (moveToActive, and moveToFinished / moveToDelayed fetching the next job)
INCRs when the caller passes `limiter {max, duration}` in its opts, with a PEXPIRE of `duration`
on the first start of a window. Once the counter reaches `max`, the scripts fetch nothing and
return the key's PTTL instead. So a limit holds over every worker of the queue, Node or Python,
that passes the same limiter.

The manual limit (Node's `worker.rateLimit(ms)` / `queue.rateLimit(ms)`) sets the counter to
`Number.MAX_SAFE_INTEGER` for `ms`; a job that hit the limit goes back to wait with
moveJobFromActiveToWait, which uses no attempt (Node's `RateLimitError`).
"""

from __future__ import annotations

from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import ScriptRunner, script
from twenty_jobs.wire.scripts.errors import check_reply

MOVE_JOB_FROM_ACTIVE_TO_WAIT = script("moveJobFromActiveToWait")
# JavaScript's Number.MAX_SAFE_INTEGER, the counter value Node writes for a manual limit.
LIMIT_REACHED = 2**53 - 1


async def set_rate_limit(runner: ScriptRunner, keys: QueueKeys, duration_ms: int) -> None:
    """Let no worker with a limiter start a job of this queue for `duration_ms` (Node's
    `rateLimit(ms)`: `SET limiter MAX_SAFE_INTEGER PX ms`)."""
    await runner.call("SET", keys.limiter, LIMIT_REACHED, "PX", duration_ms)


async def move_job_back_to_wait(runner: ScriptRunner, keys: QueueKeys, job_id: str, token: str) -> int:
    """Put an active job back in wait (or prioritized) without using an attempt, releasing its
    lock (moveJobFromActiveToWait-9). Returns the ms left on the queue's rate limit (0: none).
    Raises a ScriptError when the job or its lock is gone. Not idempotent."""
    k = keys
    script_keys = [k.active, k.wait, k.stalled, k.paused, k.meta, k.limiter, k.prioritized, k.marker, k.events]
    reply = await runner.run_script(MOVE_JOB_FROM_ACTIVE_TO_WAIT, script_keys, [job_id, token, k.job(job_id)],
                                    idempotent=False)
    return max(int(check_reply(reply, "moveJobFromActiveToWait", job_id)), 0)
