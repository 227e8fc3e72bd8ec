"""Arguments of the BullMQ port's `moveToFinished-14.lua` for a completed job, built with the
per-queue parts computed once instead of on every job.

The worker's hot path calls this script once per job: it completes the job and, in the same
call, moves the next one to active (bullmq 3.4.4 `commands/moveToFinished-14.lua`). Layout, from
the script's header:

    KEYS[1]  wait             KEYS[6]  limiter          KEYS[11] completed (the target set)
    KEYS[2]  active           KEYS[7]  delayed          KEYS[12] the job's hash
    KEYS[3]  prioritized      KEYS[8]  paused           KEYS[13] metrics:completed
    KEYS[4]  events           KEYS[9]  meta             KEYS[14] marker
    KEYS[5]  stalled          KEYS[10] pc (priority counter)
    ARGV[1] job id   ARGV[2] timestamp (ms)   ARGV[3] "returnvalue"   ARGV[4] the JSON return value
    ARGV[5] "completed"   ARGV[6] "1" to fetch the next job, else ""   ARGV[7] the key prefix
    ARGV[8] msgpack {token, keepJobs, limiter, lockDuration, attempts, attemptsMade,
            maxMetricsSize, fpof, cpof, idof, rdof}

The values are exactly those of the port's `Scripts.moveToCompletedArgs` (tests compare the
two byte for byte); only the key list and the per-worker option values are cached. Key names
come from the port's own key map (`Scripts.keys`), never spelled here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack

# KEYS[1..10] in the script's order; KEYS[11] is the target set.
_HEAD_KEYS = ("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused", "meta", "pc")


def keep_jobs(should_remove: Any) -> dict[str, Any]:
    """The port's `getKeepJobs`: removeOnComplete/removeOnFail -> the script's keepJobs."""
    if type(should_remove) is int:  # the port's exact test: a bool is not an int here
        return {"count": should_remove}
    if type(should_remove) is dict:
        return should_remove
    if should_remove:
        return {"count": 0}
    return {"count": -1}


class CompletedArgs:
    """Builds (keys, args) of moveToFinished-14.lua for one queue's completed jobs."""

    __slots__ = ("_head", "_job_prefix", "_limiter", "_lock_duration", "_max_metrics", "_tail")

    def __init__(self, queue_keys: dict[str, str], metrics_key: str, worker_opts: dict[str, Any]) -> None:
        """`queue_keys` is the port's `Scripts.keys` map (`""` is the `<prefix>:<queue>:` prefix),
        `metrics_key` its `Scripts.toKey("metrics:completed")`, `worker_opts` the Worker's opts."""
        self._head = [queue_keys[k] for k in _HEAD_KEYS] + [queue_keys["completed"]]
        self._tail = [metrics_key, queue_keys["marker"]]
        self._job_prefix = queue_keys[""]
        self._limiter = worker_opts.get("limiter")
        self._lock_duration = worker_opts.get("lockDuration")
        metrics = worker_opts.get("metrics")
        self._max_metrics = metrics.get("maxDataPoints", "") if metrics is not None else ""

    def build(
        self, job: Any, return_value: Any, remove_on_complete: Any, token: str, fetch_next: bool
    ) -> tuple[list[Any], list[Any]]:
        job_id = job.id
        keys = [*self._head, f"{self._job_prefix}{job_id}", *self._tail]
        job_opts = job.opts
        packed_opts = msgpack.packb(
            {
                "token": token,
                "keepJobs": keep_jobs(remove_on_complete),
                "limiter": self._limiter,
                "lockDuration": self._lock_duration,
                "attempts": job.attempts,
                "attemptsMade": job.attemptsMade,
                "maxMetricsSize": self._max_metrics,
                "fpof": job_opts.get("failParentOnFailure", False),
                "cpof": job_opts.get("continueParentOnFailure", False),
                "idof": job_opts.get("ignoreDependencyOnFailure", False),
                "rdof": job_opts.get("removeDependencyOnFailure", False),
            },
            use_bin_type=True,
        )
        value = json.dumps(return_value, separators=(",", ":"), allow_nan=False)
        args = [job_id, round(time.time() * 1000), "returnvalue", value or "", "completed",
                "1" if fetch_next else "", self._job_prefix, packed_opts]
        return keys, args
