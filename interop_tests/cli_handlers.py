"""Handlers loaded by `twenty-jobs work --import interop_tests.cli_handlers` in interop tests.

Configured by environment (the worker runs in its own process):
  TJ_INTEROP_QUEUE     queue to register on
  TJ_INTEROP_NAMES     comma-separated job names
  TJ_INTEROP_OUT       file that gets one JSON line per started attempt
  TJ_INTEROP_SLEEP_MS  how long each attempt sleeps before completing
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from interop_tests.pyworker import record_of
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.registry import job

QUEUE = os.environ.get("TJ_INTEROP_QUEUE", "workspace-queue")
NAMES = [n for n in os.environ.get("TJ_INTEROP_NAMES", "InteropJob").split(",") if n]
OUT = os.environ.get("TJ_INTEROP_OUT")
SLEEP_MS = int(os.environ.get("TJ_INTEROP_SLEEP_MS", "0"))


def _write(record: dict[str, Any]) -> None:
    if OUT:
        from interop_tests.pyworker import compact_json

        with open(OUT, "a", encoding="utf-8") as f:
            f.write(compact_json(record) + "\n")
            f.flush()


async def handle(data: Any, ctx: JobContext) -> Any:
    _write(record_of(data, ctx))
    if SLEEP_MS:
        await asyncio.sleep(SLEEP_MS / 1000)
    return {"processedBy": "python", "pid": os.getpid()}


for _name in NAMES:
    job(queue=QUEUE, name=_name)(handle)
