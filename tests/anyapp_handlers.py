"""Handlers the any-BullMQ-app CLI tests load with `twenty-jobs work --import tests.anyapp_handlers`."""

from __future__ import annotations

import time
from typing import Any

import twenty_jobs

LIMITED = "anyapp-limited"
DEFAULTS = "anyapp-defaults"

twenty_jobs.queue_settings(
    DEFAULTS,
    job_defaults=twenty_jobs.JobDefaults(
        attempts=3,
        backoff=twenty_jobs.Backoff("exponential", 1000),
        remove_on_complete=twenty_jobs.KeepJobs(count=100),
        remove_on_fail=twenty_jobs.KeepJobs(count=500),
    ),
)


@twenty_jobs.job(queue=LIMITED, name="Stamp")
async def stamp(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
    """Records when it started (epoch ms) in the list named by `data["marker"]`."""
    await ctx.producer.client.rpush(data["marker"], str(time.time() * 1000))


@twenty_jobs.job(queue=DEFAULTS, name="Noop")
def noop(data: Any) -> None:
    """A blocking handler, so the queue has one."""
