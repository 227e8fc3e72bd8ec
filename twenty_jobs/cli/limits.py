"""`work --limit MAX/DURATION_MS` and `--limit QUEUE=MAX/DURATION_MS`: a queue's rate limiter, the
one a Node BullMQ app gives its Worker as `limiter: {max, duration}` (docs/any-bullmq-app.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from twenty_jobs.cli.errors import fail
from twenty_jobs.cli.options import DAY_MS
from twenty_jobs.runtime.config import QueueSettings
from twenty_jobs.wire.scripts.worker import Limiter

# More starts per window than any worker can make: a larger number is a typo.
MAX_LIMIT_JOBS = 1_000_000
_SPEC = re.compile(r"(?:(?P<queue>[^=]+)=)?(?P<max>\d+)/(?P<duration>\d+)")
USAGE = "--limit takes MAX/DURATION_MS (every served queue) or QUEUE=MAX/DURATION_MS, e.g. --limit 10/1000"


def parse_limits(specs: Iterable[str], served: list[str]) -> tuple[Limiter | None, dict[str, QueueSettings]]:
    """The limiter for every served queue (None: none given) and the per-queue ones."""
    every: Limiter | None = None
    per_queue: dict[str, QueueSettings] = {}
    for spec in specs:
        match = _SPEC.fullmatch(spec.strip())
        if match is None:
            fail(f"{USAGE}; got '{spec}'")
        limiter = Limiter(int(match["max"]), int(match["duration"]))
        if not 1 <= limiter.max <= MAX_LIMIT_JOBS:
            fail(f"--limit '{spec}': MAX must be 1 to {MAX_LIMIT_JOBS:,} jobs")
        if not 1 <= limiter.duration_ms <= DAY_MS:
            fail(f"--limit '{spec}': DURATION_MS must be 1 to {DAY_MS:,} (a day)")
        queue = match["queue"]
        if queue is None:
            if every is not None:
                fail(f"--limit without a queue is given twice ('{spec}'); give one, or --limit QUEUE=MAX/DURATION_MS")
            every = limiter
        elif queue not in served:
            fail(f"--limit '{spec}': this worker does not serve queue '{queue}' (it serves: {', '.join(served)})")
        elif queue in per_queue:
            fail(f"--limit for queue '{queue}' is given twice")
        else:
            per_queue[queue] = QueueSettings(limiter=limiter)
    return every, per_queue
