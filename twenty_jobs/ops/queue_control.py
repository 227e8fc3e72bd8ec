"""Pause and resume a queue for every worker, Node and Python, behind the mixed-version guard.

Refused when Node bullmq < 6 shares the queue (docs/mixed-versions.md): Node 5's resume RENAMEs
its `paused` list over `wait`, losing what Python added meanwhile.
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis
from bullmq import Queue

from twenty_jobs.wire.compat import refuse_pause_resume

Action = Literal["pause", "resume"]


async def pause_or_resume(client: aioredis.Redis, prefix: str, queue: str, action: Action, *, force: bool) -> None:
    """Pause or resume `queue`; raises PauseResumeRefused (a ConfigError) under the guard."""
    await refuse_pause_resume(client, prefix, queue, action=action, force=force)
    q = Queue(queue, {"connection": client, "prefix": prefix})
    await (q.pause() if action == "pause" else q.resume())
