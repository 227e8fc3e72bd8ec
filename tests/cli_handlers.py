"""Handlers the CLI tests load with `twenty-jobs work --import tests.cli_handlers`."""

from __future__ import annotations

import asyncio
from typing import Any

import twenty_jobs


@twenty_jobs.job(queue="workspace-queue", name="Sleepy")
async def sleepy(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> dict[str, Any]:
    """Marks its start in Redis, sleeps `seconds` on the first run only, marks its end."""
    client = ctx.producer.client
    marker = data["marker"]
    await client.rpush(f"{marker}:started", ctx.job_id)
    first_run = await client.set(f"{marker}:first-run-seen", "1", nx=True)
    if first_run:
        await asyncio.sleep(float(data.get("seconds", 0)))
    await client.rpush(f"{marker}:finished", ctx.job_id)
    return {"slept": bool(first_run)}


@twenty_jobs.job(queue="workspace-queue", name="Echo")
async def echo(data: Any, ctx: twenty_jobs.JobContext) -> Any:
    return data


@twenty_jobs.job(queue="workspace-queue", name="Chaos")
async def chaos(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
    """A short job that records every run, so the chaos test can tell lost jobs from repeated ones."""
    await asyncio.sleep(float(data.get("seconds", 0.01)))
    await ctx.producer.client.rpush(f"{data['marker']}:runs", ctx.job_id)
