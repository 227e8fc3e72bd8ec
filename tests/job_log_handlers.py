"""Handlers the job-log tests load with `twenty-jobs work --import tests.job_log_handlers`."""

from __future__ import annotations

from typing import Any

import twenty_jobs

QUEUE = "workspace-queue"


@twenty_jobs.job(queue=QUEUE, name="LogNoop")
async def log_noop(data: Any, ctx: twenty_jobs.JobContext) -> None:
    return None


class HandlerCrash(Exception):
    """What LogBoom raises."""


@twenty_jobs.job(queue=QUEUE, name="LogBoom")
async def log_boom(data: Any, ctx: twenty_jobs.JobContext) -> None:
    raise HandlerCrash(f"boom {data.get('n')}")
