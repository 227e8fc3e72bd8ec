"""Pause and resume a queue for every worker, Node and Python, behind the mixed-version guard.

Refused when Node bullmq < 6 shares the queue (docs/mixed-versions.md): Node 5's resume RENAMEs
its `paused` list over `wait`, losing what Python added meanwhile.
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis

from twenty_jobs.wire.compat import refuse_pause_resume
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import ClientRunner
from twenty_jobs.wire.scripts import queue as queue_scripts

Action = Literal["pause", "resume"]


async def pause_or_resume(client: aioredis.Redis, prefix: str, queue: str, action: Action, *, force: bool) -> None:
    """Pause or resume `queue`; raises PauseResumeRefused (a ConfigError) under the guard."""
    await refuse_pause_resume(client, prefix, queue, action=action, force=force)
    change = queue_scripts.pause if action == "pause" else queue_scripts.resume
    await change(ClientRunner(client), QueueKeys(prefix, queue))
