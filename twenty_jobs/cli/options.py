"""The options several commands share, defined once, and the bounds of every numeric option.

Bounds refuse values that would be accepted and then misbehave (a delay past the year 2300, a
lock nothing can renew, 100,000 slots using gigabytes): the reasons are in docs/cli.md.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated

import typer

# -- bounds (docs/cli.md, "Bounds") --------------------------------------------------------------

DAY_MS = 86_400_000
# Delays and repeat intervals: 10 years. Longer is a typo, and Node's delayed-set score
# (timestamp * 4096) stops being exact in a double past about 2^53 / 4096 ms from now.
MAX_DELAY_MS = 3650 * DAY_MS
# Retries after the first attempt. BullMQ stores attempts as a number msgpack and Lua must handle;
# 2^64 made every completion fail in msgpack and retry at once (a hot loop).
MAX_RETRY_LIMIT = 1_000_000
# Job slots per queue in one process. Twenty's largest is 20; 100,000 slots used 694 MB for
# 1,000 jobs. More throughput comes from more processes, not more slots.
MAX_CONCURRENCY = 1_000
# Locks, stall checks and grace periods: a day. A longer lock means a crashed worker's jobs wait
# that long before another worker takes them over.
MAX_LOCK_DURATION_MS = DAY_MS
MAX_STALLED_INTERVAL_MS = DAY_MS
MAX_STALLED_COUNT = 1_000
MAX_SECONDS = 86_400.0


def finite(value: float | None) -> float | None:
    """Option callback: click's float ranges let `nan` through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


# -- connection --------------------------------------------------------------------------------

RedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url", metavar="URL",
        help="Redis URL (default: REDIS_QUEUE_URL, REDIS_URL, redis://127.0.0.1:6379).",
    ),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option("--prefix", metavar="PREFIX", help="BullMQ key prefix (default: TWENTY_JOBS_PREFIX or 'bull')."),
]

# -- queues and handlers -------------------------------------------------------------------------

QueuesOpt = Annotated[
    list[str] | None, typer.Option("--queue", "-q", metavar="QUEUE", help="Only this queue (repeatable).")
]
QueueArg = Annotated[str, typer.Argument(metavar="QUEUE", help="Queue name, e.g. webhook-queue.")]
CustomQueueOpt = Annotated[
    bool,
    typer.Option(
        "--custom-queue", help="Accept a queue name that is neither Twenty's nor present in Redis."
    ),
]
ImportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--import", "-i", metavar="MODULE",
        help="Import this module to load its handlers (repeatable; found in the current directory too).",
    ),
]

# -- output ------------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
