"""The handler the scale-out test loads with `twenty-jobs work --import tests.scale_handlers`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import twenty_jobs


@twenty_jobs.job(queue="workspace-queue", name="Tally")
async def tally(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
    """About 1 ms of work, then one round trip recording which process ran which job."""
    await asyncio.sleep(0.001)
    marker = data["marker"]
    pipe = ctx.producer.client.pipeline(transaction=False)
    pipe.hincrby(f"{marker}:runs-by-pid", str(os.getpid()), 1)
    pipe.sadd(f"{marker}:ran", ctx.job_id)
    await pipe.execute()
