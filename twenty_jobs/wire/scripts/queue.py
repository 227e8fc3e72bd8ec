"""Adding jobs and controlling a queue: the scripts a producer and the operations commands run.

Arguments are those of Node bullmq 6.4's `Scripts` class (docs/bullmq-wire.md, "Lua scripts").
Each function takes a `ScriptRunner` (a redis-py client through `wire.lua.ClientRunner`, or the
worker's command connection) and the queue's `QueueKeys`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from twenty_jobs.wire.compat import node_major_below_6
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import LuaScript, ScriptRunner, script
from twenty_jobs.wire.scripts.errors import check_reply
from twenty_jobs.wire.scripts.worker import compact_json, now_ms

ADD_STANDARD_JOB = script("addStandardJob")
ADD_DELAYED_JOB = script("addDelayedJob")
ADD_PRIORITIZED_JOB = script("addPrioritizedJob")
GET_COUNTS = script("getCounts")
GET_RANGES = script("getRanges")
PAUSE = script("pause")
DRAIN = script("drain")
OBLITERATE = script("obliterate")
MOVE_JOBS_TO_WAIT = script("moveJobsToWait")
CLEAN_JOBS_IN_SET = script("cleanJobsInSet")
REPROCESS_JOB = script("reprocessJob")
PROMOTE = script("promote")

# Job ids of job-scheduler iterations: `repeat:<scheduler id>:<millis>` (wire/scripts/schedulers.py).
ITERATION_ID_PREFIX = "repeat:"
# Long option names BullMQ stores under a short key (Node's `optsEncodeMap`).
SHORT_OPTION_NAMES = {
    "deduplication": "de",
    "failParentOnFailure": "fpof",
    "continueParentOnFailure": "cpof",
    "ignoreDependencyOnFailure": "idof",
    "removeDependencyOnFailure": "rdof",
    "keepLogs": "kl",
}


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to add: its name, data and BullMQ job options (long names, as `queue.add` takes them;
    `jobId` in the options is the custom id)."""

    name: str
    data: Any
    opts: Mapping[str, Any] = field(default_factory=dict)
    timestamp: int | None = None


def stored_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options as BullMQ stores them: `attempts` and `delay` always present, `backoff`
    normalized (a number means fixed), long names shortened."""
    final: dict[str, Any] = {"attempts": 0, "delay": 0, **opts, "backoff": normalize_backoff(opts.get("backoff"))}
    return {SHORT_OPTION_NAMES.get(name, name): value for name, value in final.items()}


def normalize_backoff(backoff: Any) -> Any:
    """Node's `Backoffs.normalize`: a number is a fixed delay; an object is kept; else none."""
    if isinstance(backoff, int | float) and not isinstance(backoff, bool):
        return {"type": "fixed", "delay": backoff}
    return backoff or None


def add_job_call(keys: QueueKeys, job: NewJob, *, standard_target: str | None = None) -> tuple[LuaScript, list[str],
                                                                                               list[Any]]:
    """(script, keys, args) that add `job`: addDelayedJob when it has a delay, else
    addPrioritizedJob when it has a priority, else addStandardJob, which pushes to `wait`, or to
    `standard_target` instead (its KEYS[1]; see `add_jobs` for the legacy `paused` list)."""
    opts = stored_opts(job.opts)
    dedup = opts.get("de")
    dedup_key = f"{keys.deduplication_prefix}{dedup['id']}" if isinstance(dedup, dict) and dedup.get("id") else None
    timestamp = job.timestamp if job.timestamp is not None else now_ms()
    packed_args = msgpack.packb(
        [keys.job_prefix, str(job.opts.get("jobId") or ""), job.name, timestamp, None, None, None,
         opts.get("repeatJobKey"), dedup_key],
        use_bin_type=True,
    )
    args = [packed_args, compact_json(job.data), msgpack.packb(opts, use_bin_type=True)]
    k = keys
    if opts.get("delay"):
        return ADD_DELAYED_JOB, [k.marker, k.meta, k.id, k.delayed, k.completed, k.events], args
    if opts.get("priority"):
        return ADD_PRIORITIZED_JOB, [k.marker, k.meta, k.id, k.prioritized, k.delayed, k.completed, k.active,
                                     k.events, k.pc], args
    target = standard_target or k.wait
    return ADD_STANDARD_JOB, [target, k.paused, k.meta, k.id, k.completed, k.delayed, k.active, k.events,
                              k.marker], args


@dataclass(frozen=True, slots=True)
class Added:
    """The ids of added jobs, in order; `into_legacy_paused`: plain jobs went to the legacy
    `paused` list (a Node bullmq < 6 has the queue paused)."""

    ids: list[str]
    into_legacy_paused: bool = False


async def add_jobs(client: aioredis.Redis, keys: QueueKeys, jobs: Sequence[NewJob]) -> Added:
    """Add jobs all or none, in one MULTI/EXEC (Node's `add`/`addBulk`). The scripts are loaded
    inside the same transaction, so a Redis that lost them cannot run half of the adds.

    Plain jobs (no delay, no priority) go where the Node bullmq that shares the queue expects
    them (docs/mixed-versions.md): to `wait`, but to the legacy `paused` list when a Node bullmq
    below 6 has the queue paused. That Node's `resume()` RENAMEs `paused` over `wait`, and would
    drop jobs added to `wait` meanwhile; from `paused` they move back with the others (and a
    Node >= 6 or twenty-jobs resume migrates that list too). The queue's meta hash is WATCHed for
    the decision, so a pause racing the add retries it."""
    plain = any(not stored_opts(job.opts).get("delay") and not stored_opts(job.opts).get("priority") for job in jobs)
    while True:
        try:
            async with client.pipeline(transaction=True) as pipe:
                target: str | None = None
                if plain:
                    await pipe.watch(keys.meta)
                    paused, version = await pipe.hmget(keys.meta, ["paused", "version"])  # type: ignore[misc]
                    if paused and node_major_below_6(version):
                        target = keys.paused
                    pipe.multi()  # type: ignore[no-untyped-call]
                calls = [add_job_call(keys, job, standard_target=target) for job in jobs]
                used = {lua.sha: lua for lua, _, _ in calls}
                for lua in used.values():
                    pipe.script_load(lua.text)
                for lua, script_keys, args in calls:
                    pipe.evalsha(lua.sha, len(script_keys), *script_keys, *args)  # type: ignore[no-untyped-call]
                replies = await pipe.execute()
        except WatchError:
            continue  # the queue was paused or resumed meanwhile: decide again
        ids = [str(check_reply(reply, f"add job '{job.name}'")) for job, reply in
               zip(jobs, replies[len(used):], strict=True)]
        return Added(ids, target is not None)


# -- reading ---------------------------------------------------------------------------------------

def _state_name(state: str) -> str:
    return "wait" if state == "waiting" else state


async def get_counts(runner: ScriptRunner, keys: QueueKeys, states: Sequence[str]) -> dict[str, int]:
    """Jobs per state (BullMQ's names: waiting, active, delayed, prioritized, completed, failed,
    paused, waiting-children), as Node's `getJobCounts`."""
    reply = await runner.run_script(GET_COUNTS, [keys.job_prefix], [_state_name(s) for s in states], idempotent=True)
    return {state: int(count) for state, count in zip(states, reply, strict=True)}


async def get_ranges(
    runner: ScriptRunner, keys: QueueKeys, states: Sequence[str], start: int = 0, end: int = -1, *, asc: bool = False
) -> list[str]:
    """Job ids in the given states, newest first unless `asc` (Node's `getRanges`)."""
    names = [_state_name(s) for s in states]
    reply = await runner.run_script(GET_RANGES, [keys.job_prefix], [start, end, "1" if asc else "0", *names],
                                    idempotent=True)
    ids: list[str] = []
    for name, part in zip(names, reply, strict=True):
        part = [str(i) for i in part or ()]
        if asc and name in ("wait", "paused", "active"):
            part.reverse()  # lists hold the newest first
        ids += part
    return ids


# -- control ---------------------------------------------------------------------------------------

async def pause(runner: ScriptRunner, keys: QueueKeys) -> None:
    """Pause the queue for every worker (`meta.paused`; no job moves)."""
    k = keys
    await runner.run_script(PAUSE, [k.wait, k.paused, k.meta, k.prioritized, k.events, k.delayed, k.marker],
                            ["paused", "1"], idempotent=True)


async def resume(runner: ScriptRunner, keys: QueueKeys) -> None:
    """Resume the queue; jobs an older Node bullmq parked in the legacy `paused` list are moved
    back to `wait` (7,000 per call, so the loop)."""
    k = keys
    emit = "1"
    while True:
        remaining = await runner.run_script(
            PAUSE, [k.paused, k.wait, k.meta, k.prioritized, k.events, k.delayed, k.marker], ["resumed", emit],
            idempotent=True,
        )
        if not remaining:
            return
        emit = "0"


async def drain(runner: ScriptRunner, keys: QueueKeys, *, delayed: bool = False) -> None:
    """Remove every waiting (and with `delayed`, delayed) job; active, completed and failed stay."""
    k = keys
    await runner.run_script(DRAIN, [k.wait, k.paused, k.delayed, k.prioritized, k.repeat],
                            [k.job_prefix, "1" if delayed else "0"], idempotent=True)


# `obliterate` return codes (obliterate-2.lua): 1 means "call again".
OBLITERATE_DONE = 0
OBLITERATE_NOT_PAUSED = -1
OBLITERATE_ACTIVE_JOBS = -2
# The sets and lists `cleanJobsInSet` can clean, by BullMQ's names.
CLEANABLE_STATES = ("completed", "failed", "delayed", "wait", "active", "paused", "prioritized")


async def obliterate_step(runner: ScriptRunner, keys: QueueKeys, *, count: int, force: bool) -> int:
    """Delete up to `count` jobs and, once none is left, every key of the queue. Returns
    OBLITERATE_DONE, 1 (call again), OBLITERATE_NOT_PAUSED or OBLITERATE_ACTIVE_JOBS (active jobs
    and not `force`); the caller loops, so it can show progress between calls."""
    reply = await runner.run_script(OBLITERATE, [keys.meta, keys.job_prefix], [count, "force" if force else ""],
                                    idempotent=True)
    return int(reply or 0)


async def move_jobs_to_wait(
    runner: ScriptRunner, keys: QueueKeys, state: str, *, count: int, timestamp: int
) -> bool:
    """Move up to `count` jobs that entered `state` (failed, completed or delayed) before
    `timestamp` back to wait (Node's `retryJobs`/`promoteJobs`); True while more remain."""
    k = keys
    reply = await runner.run_script(
        MOVE_JOBS_TO_WAIT, [k.job_prefix, k.events, k.state(state), k.wait, k.paused, k.meta, k.active, k.marker],
        [count, timestamp, state], idempotent=True,
    )
    return bool(reply)


async def clean_jobs_in_set(
    runner: ScriptRunner, keys: QueueKeys, state: str, *, grace_ms: int, limit: int, now_ms: int | None = None
) -> list[str]:
    """Delete up to `limit` jobs (0: all) that entered `state` (one of CLEANABLE_STATES, or
    `waiting`) more than `grace_ms` before `now_ms` (default: now), with their logs; returns the
    deleted ids (Node's `clean`)."""
    if _state_name(state) not in CLEANABLE_STATES:
        raise ValueError(f"cannot clean state {state!r}; one of {', '.join(CLEANABLE_STATES)}")
    now = round(time.time() * 1000) if now_ms is None else now_ms
    reply = await runner.run_script(
        CLEAN_JOBS_IN_SET, [keys.state(state), keys.events, keys.repeat],
        [keys.job_prefix, now - grace_ms, limit, _state_name(state)], idempotent=True,
    )
    return [str(i) for i in reply or ()]


async def reprocess_job(runner: ScriptRunner, keys: QueueKeys, job_id: str, state: str, *, lifo: bool = False) -> None:
    """Move one finished job (`state` failed or completed) back to wait, keeping its attempt
    counts (Node's `job.retry(state)`)."""
    k = keys
    reply = await runner.run_script(
        REPROCESS_JOB, [k.job(job_id), k.events, k.state(state), k.wait, k.meta, k.active, k.marker, k.prioritized,
                        k.pc],
        [job_id, ("R" if lifo else "L") + "PUSH", "failedReason" if state == "failed" else "returnvalue", state,
         "0", "0"],
        idempotent=False,
    )
    check_reply(reply, "reprocessJob", job_id)


async def promote(runner: ScriptRunner, keys: QueueKeys, job_id: str) -> bool:
    """Move a delayed job to wait (or prioritized) now (promote-9, Node's `job.promote()`); False
    when it is no longer delayed (already promoted, taken or removed)."""
    k = keys
    reply = await runner.run_script(
        PROMOTE, [k.delayed, k.wait, k.paused, k.meta, k.prioritized, k.active, k.pc, k.events, k.marker],
        [k.job_prefix, job_id], idempotent=True,
    )
    return bool(reply == 0)


async def count_pending_jobs(client: aioredis.Redis, keys: QueueKeys) -> int:
    """Jobs that still have to run: waiting, prioritized, active, in the legacy paused list, and
    delayed ones that are not future iterations of a job scheduler (those never run out)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.wait)
    pipe.zcard(keys.prioritized)
    pipe.llen(keys.active)
    pipe.llen(keys.paused)
    pipe.zrange(keys.delayed, 0, 999)
    wait, prioritized, active, paused, delayed = await pipe.execute()
    one_off_delayed = sum(1 for job_id in delayed if not str(job_id).startswith(ITERATION_ID_PREFIX))
    return int(wait) + int(prioritized) + int(active) + int(paused) + one_off_delayed
