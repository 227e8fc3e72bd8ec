"""Queues that twenty-jobs shares with another consumer (docs/shared-queues.md): which job names
wait for which consumer, and the names Twenty's Node worker would complete without running them.
Read only; `check` and `doctor` turn the results into their findings.

* A Python worker run with `--unknown-jobs leave` leaves every job it has no handler for to the
  queue's other consumers. Pending jobs whose name no live twenty-jobs worker of the queue
  handles wait for such a consumer: fine while one is connected, stuck while none is.
* Twenty's Node worker completes, unrun, any job whose name it has no handler for: on a Twenty
  queue it also serves, names only Python handles (not Twenty's own) may be lost that way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from twenty_jobs.ops.findings import Finding, Severity
from twenty_jobs.runtime.config import UnknownJobs
from twenty_jobs.runtime.hand_off import other_consumers
from twenty_jobs.twenty.jobs import python_only_names
from twenty_jobs.wire.keys import QueueKeys

# Pending job ids read per state and queue to learn their names.
NAME_SAMPLE = 1000


@dataclass(frozen=True, slots=True)
class PythonWorkerView:
    """What a live twenty-jobs worker says about one queue (from its heartbeat)."""

    handlers: frozenset[str]
    unknown_jobs: str


async def pending_names(client: aioredis.Redis, prefix: str, queue: str, sample: int = NAME_SAMPLE) -> Counter[str]:
    """Names of the jobs waiting, prioritized or delayed on `queue` (up to `sample` per state)."""
    keys = QueueKeys(prefix, queue)
    pipe = client.pipeline(transaction=False)
    pipe.lrange(keys.wait, 0, sample - 1)
    pipe.zrange(keys.prioritized, 0, sample - 1)
    pipe.zrange(keys.delayed, 0, sample - 1)
    ids = [str(job_id) for group in await pipe.execute() for job_id in group]
    names: Counter[str] = Counter()
    if ids:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(keys.job(job_id), "name")
        names.update(str(name) for name in await pipe.execute() if name is not None)
    return names


def _listed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def shared_queue_findings(
    client: aioredis.Redis,
    prefix: str,
    workers: Mapping[str, Iterable[PythonWorkerView]],
    client_names: list[str] | None,
) -> list[Finding]:
    """For each queue with live twenty-jobs workers (`workers`: queue -> their views): who the
    pending jobs no twenty-jobs worker handles wait for, and the Python-only names Node would
    complete unrun. `client_names`: CLIENT LIST names (None where refused)."""
    findings: list[Finding] = []
    for queue, views in workers.items():
        views = list(views)
        handled = frozenset().union(*(v.handlers for v in views))
        others = None if client_names is None else other_consumers(client_names, prefix, queue)
        node = "consumers other than twenty-jobs" if others is None else f"{others} consumer(s) other than twenty-jobs"
        only_python = python_only_names(queue, handled)
        if only_python and others:
            findings.append(Finding(
                Severity.WARN, "python_only_names_shared",
                f"{queue}: {others} consumer(s) other than twenty-jobs (Twenty's Node worker?) also serve it, and "
                f"Twenty's worker completes jobs it has no handler for without running them: jobs named "
                f"{', '.join(only_python)} (handled only by twenty-jobs) may be lost that way",
                f"put those jobs on a queue of their own, or keep Node off {queue} (WORKER_EXCLUDED_QUEUES={queue} "
                "on Twenty's worker)", queue,
            ))
        if not any(v.unknown_jobs == UnknownJobs.LEAVE for v in views):
            continue
        waiting = {n: c for n, c in (await pending_names(client, prefix, queue)).items() if n not in handled}
        if not waiting:
            continue
        if others == 0:
            findings.append(Finding(
                Severity.ERROR, "waiting_for_consumer",
                f"{queue}: {sum(waiting.values())} job(s) that twenty-jobs leaves to another consumer wait, and no "
                f"consumer other than twenty-jobs is connected: {_listed(waiting)}",
                f"start Twenty's worker for {queue} (take it out of WORKER_EXCLUDED_QUEUES), or add handlers for "
                "these names", queue,
            ))
        else:
            findings.append(Finding(
                Severity.INFO, "waiting_for_consumer",
                f"{queue}: {sum(waiting.values())} job(s) wait for the {node} (no twenty-jobs worker handles "
                f"them): {_listed(waiting)}", None, queue,
            ))
    return findings
