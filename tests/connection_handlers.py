"""Handlers for the connection tests (`twenty-jobs work --import tests.connection_handlers`), on
a queue of their own."""

from __future__ import annotations

import asyncio
from typing import Any

import twenty_jobs
from twenty_jobs.errors import PermanentJobError

QUEUE = "tj-conn"


@twenty_jobs.job(queue=QUEUE, name="Echo")
async def echo(data: Any, ctx: twenty_jobs.JobContext) -> Any:
    return data


@twenty_jobs.job(queue=QUEUE, name="Fail")
async def fail(data: Any, ctx: twenty_jobs.JobContext) -> None:
    raise PermanentJobError("failing on purpose")


@twenty_jobs.job(queue=QUEUE, name="Pace")
async def pace(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> dict[str, Any]:
    """Takes `ms` milliseconds, so a run of many jobs lasts long enough to fail over under it."""
    await asyncio.sleep(float(data.get("ms", 0)) / 1000)
    return {"i": data.get("i")}
