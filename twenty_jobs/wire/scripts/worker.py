"""The scripts a worker runs for one queue, with every per-queue key and option built once.

The hot path is `move_to_active` (fetch) and `finish` (complete or fail, and fetch the next job in
the same call); the rest runs per retry, per lock-renewal tick or per stalled-check interval.
Arguments are exactly what Node bullmq 6.4's `Scripts` class sends (the port's Lua is 6.4.0's):
layouts in docs/bullmq-wire.md, "Lua scripts".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from twenty_jobs.wire.job import is_counter, lua_repairs, parent_fields_breaking_scripts
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import ScriptRunner, script
from twenty_jobs.wire.scripts.errors import check_reply

MOVE_TO_ACTIVE = script("moveToActive")
MOVE_TO_FINISHED = script("moveToFinished")
RETRY_JOB = script("retryJob")
MOVE_TO_DELAYED = script("moveToDelayed")
EXTEND_LOCKS = script("extendLocks")
MOVE_STALLED_JOBS_TO_WAIT = script("moveStalledJobsToWait")
GET_RATE_LIMIT_TTL = script("getRateLimitTtl")
UPDATE_PROGRESS = script("updateProgress")
ADD_LOG = script("addLog")
UPDATE_DATA = script("updateData")

FinishTarget = Literal["completed", "failed"]


def now_ms() -> int:
    return round(time.time() * 1000)


def compact_json(value: Any) -> str:
    """JSON as BullMQ writes it (`JSON.stringify`: no spaces); NaN/Infinity are refused, as
    `JSON.stringify` would turn them into null silently."""
    if value is None:  # most handlers return nothing: skip the encoder
        return "null"
    return _encode_compact(value)


# `json.dumps` with these options builds a new encoder on every call (about 0.7 µs, on every job's
# return value); one shared encoder writes the same text.
_encode_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class Limiter:
    """A worker's `limiter {max, duration}`: at most `max` job starts per `duration_ms`, counted
    in the queue's `limiter` key by every worker of the queue, Node or Python."""

    max: int
    duration_ms: int

    def as_opts(self) -> dict[str, int]:
        return {"max": self.max, "duration": self.duration_ms}


@dataclass(frozen=True, slots=True)
class FetchedJob:
    """A job moved to active: its id and its hash fields as the script returned them."""

    id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Fetch:
    """What a fetching script returned: a job, or why there is none.

    `rate_limited_ms`: the queue's rate limit is reached for this many more ms (the limiter key's
    TTL); `next_delayed_at`: epoch ms of the next delayed job (0: none).
    """

    job: FetchedJob | None
    rate_limited_ms: int = 0
    next_delayed_at: int = 0


NOTHING = Fetch(None)


def parse_fetch(raw: Any) -> Fetch:
    """The reply of moveToActive, or of a finishing script asked to fetch the next job:
    `0`, or `[hash as a flat list | 0, job id | 0, rateLimitTtl, nextDelayedTimestamp]`."""
    if not raw or type(raw) is not list:
        return NOTHING
    limit = _whole(raw[2]) if len(raw) > 2 else 0
    delayed = _whole(raw[3]) if len(raw) > 3 else 0
    flat = raw[0]
    if flat and type(flat) is list:
        it = iter(flat)
        return Fetch(FetchedJob(str(raw[1]), dict(zip(it, it, strict=False))), limit, delayed)
    return Fetch(None, limit, delayed) if (limit or delayed) else NOTHING


def _whole(value: Any) -> int:
    if type(value) is int:
        return max(value, 0)
    try:
        return max(int(float(value)), 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class ParentFlags:
    """What a flow child does to its parent when it fails (the `fpof cpof idof rdof` options)."""

    fail_parent: bool = False
    continue_parent: bool = False
    ignore_dependency: bool = False
    remove_dependency: bool = False


NO_PARENT_FLAGS = ParentFlags()


class WorkerScripts:
    """The per-job scripts of one queue's worker.

    `lock_duration_ms` is written with every lock; `limiter` is passed to every fetching script
    (so the limit holds across all workers of the queue); `max_metrics_points` makes the finishing
    scripts keep BullMQ's per-minute `metrics:completed/failed` series (None: no metrics).
    """

    __slots__ = (
        "_active_opts",
        "_completed_head",
        "_completed_tail",
        "_failed_head",
        "_failed_tail",
        "_fetch_keys",
        "_limiter",
        "_max_metrics",
        "keys",
        "lock_duration_ms",
    )

    def __init__(
        self,
        keys: QueueKeys,
        *,
        lock_duration_ms: int,
        limiter: Limiter | None = None,
        max_metrics_points: int | None = None,
    ) -> None:
        self.keys = keys
        self.lock_duration_ms = lock_duration_ms
        self._limiter = limiter.as_opts() if limiter is not None else None
        self._max_metrics: int | str = max_metrics_points if max_metrics_points is not None else ""
        k = keys
        # moveToActive-11 KEYS, and KEYS[1..10] of moveToFinished-14 (the same ten, then the target).
        self._fetch_keys = [k.wait, k.active, k.prioritized, k.events, k.stalled, k.limiter, k.delayed,
                            k.paused, k.meta, k.pc, k.marker]
        head = self._fetch_keys[:10]
        self._completed_head = [*head, k.completed]
        self._failed_head = [*head, k.failed]
        self._completed_tail = [k.metrics_completed, k.marker]
        self._failed_tail = [k.metrics_failed, k.marker]
        self._active_opts: dict[str, bytes] = {}

    # -- fetch -------------------------------------------------------------------------------------

    def _fetch_opts(self, token: str) -> bytes:
        # {token, lockDuration, limiter}: one packing per token (a slot keeps its token).
        packed = self._active_opts.get(token)
        if packed is None:
            if len(self._active_opts) > 4096:
                self._active_opts.clear()
            packed = self._active_opts[token] = msgpack.packb(
                {"token": token, "lockDuration": self.lock_duration_ms, "limiter": self._limiter}, use_bin_type=True
            )
        return packed

    async def move_to_active(self, runner: ScriptRunner, token: str) -> Fetch:
        """Move the next waiting (or due delayed, or prioritized) job to active under `token`'s lock.

        Not idempotent: a lost reply leaves a job active with nobody running it (the stall
        checker takes it back once the lock expires)."""
        args = [self.keys.job_prefix, now_ms(), self._fetch_opts(token)]
        raw = await runner.run_script(MOVE_TO_ACTIVE, self._fetch_keys, args, idempotent=False)
        return parse_fetch(raw)

    # -- finish ------------------------------------------------------------------------------------

    def finish_args(
        self,
        job_id: str | bytes,
        token: str,
        *,
        target: FinishTarget,
        value: str,
        keep: Mapping[str, int],
        attempts: int,
        attempts_made: int,
        parent: ParentFlags = NO_PARENT_FLAGS,
        fetch_next: bool,
        fields: Mapping[str, str | bytes] | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """(keys, args) of moveToFinished-14: `target` completed (value = the JSON return value)
        or failed (value = the failed reason); `keep` is the script's keepJobs; `fields` are set
        on the job hash before anything else (failedReason, stacktrace, repairs)."""
        if target == "completed":
            head, tail = self._completed_head, self._completed_tail
        else:
            head, tail = self._failed_head, self._failed_tail
        job_key: str | bytes
        if type(job_id) is bytes:
            job_key = self.keys.job_prefix.encode() + job_id
        else:
            job_key = self.keys.job_prefix + str(job_id)
        packed = msgpack.packb(
            {
                "token": token,
                "keepJobs": keep,
                "limiter": self._limiter,
                "lockDuration": self.lock_duration_ms,
                "attempts": attempts,
                "attemptsMade": attempts_made,
                "maxMetricsSize": self._max_metrics,
                "fpof": parent.fail_parent,
                "cpof": parent.continue_parent,
                "idof": parent.ignore_dependency,
                "rdof": parent.remove_dependency,
            },
            use_bin_type=True,
        )
        prop = "returnvalue" if target == "completed" else "failedReason"
        args: list[Any] = [job_id, now_ms(), prop, value, target, "1" if fetch_next else "", self.keys.job_prefix,
                           packed]
        if fields:
            args.append(pack_fields(fields))
        return [*head, job_key, *tail], args

    async def finish(
        self,
        runner: ScriptRunner,
        job_id: str | bytes,
        token: str,
        *,
        target: FinishTarget,
        value: str,
        keep: Mapping[str, int],
        attempts: int,
        attempts_made: int,
        parent: ParentFlags = NO_PARENT_FLAGS,
        fetch_next: bool,
        fields: Mapping[str, str | bytes] | None = None,
    ) -> Fetch:
        """Complete or fail the job and, with `fetch_next`, move the next one to active under the
        same token. Not idempotent (a second send finds the lock gone)."""
        keys, args = self.finish_args(
            job_id, token, target=target, value=value, keep=keep, attempts=attempts, attempts_made=attempts_made,
            parent=parent, fetch_next=fetch_next, fields=fields,
        )
        raw = await runner.run_script(MOVE_TO_FINISHED, keys, args, idempotent=False)
        if type(raw) is int and raw < 0:
            check_reply(raw, "moveToFinished", _text(job_id))
        return parse_fetch(raw) if fetch_next else NOTHING

    async def fail_unreadable(
        self,
        runner: ScriptRunner,
        fetched: FetchedJob,
        token: str,
        *,
        reason: str,
        stack_entry: str,
        keep: Mapping[str, int],
        fetch_next: bool,
    ) -> Fetch:
        """Fail a fetched job whose hash cannot be read, through a path that cannot loop: the
        counters the script increments are repaired in the same call (its fields to update are
        set first), a `parent` or `parentKey` it could not read is deleted before, attempts are used up, and
        `keep` must not come from the job. docs/bullmq-wire.md, "The job hash"."""
        job_id = wire_text(fetched.id)
        breaking = parent_fields_breaking_scripts(fetched.fields)
        if breaking:
            await runner.call("HDEL", wire_text(self.keys.job_prefix + fetched.id), *breaking)
        repairs = lua_repairs(fetched.fields)
        attempts_made = int(repairs.get("atm") or fetched.fields.get("atm") or 0)
        fields: dict[str, str | bytes] = {"failedReason": reason, "stacktrace": compact_json([stack_entry]),
                                          **repairs}
        return await self.finish(runner, job_id, token, target="failed", value=reason, keep=keep,
                                 attempts=attempts_made + 1, attempts_made=attempts_made, fetch_next=fetch_next,
                                 fields=fields)

    async def find_locked_by(self, runner: ScriptRunner, token: str, depth: int = 100) -> FetchedJob | None:
        """The job in `active` (among the `depth` most recent) whose lock is `token`: where a
        fetching script that failed half-way left the job it was taking."""
        ids = [str(i) for i in await runner.call("LRANGE", self.keys.active, 0, depth - 1) or ()]
        locks = await asyncio.gather(*(runner.call("GET", self.keys.lock(i)) for i in ids))
        for job_id, lock in zip(ids, locks, strict=True):
            if lock == token:
                flat = await runner.call("HGETALL", self.keys.job(job_id))
                it = iter(flat or ())
                return FetchedJob(job_id, dict(zip(it, it, strict=False)))
        return None

    # -- retry -------------------------------------------------------------------------------------

    async def retry(
        self, runner: ScriptRunner, job_id: str, token: str, *, lifo: bool, fields: Mapping[str, str | bytes]
    ) -> None:
        """Move an active job back to wait (or prioritized) for another attempt now (retryJob-11);
        `fields` (failedReason, stacktrace) are stored first. Not idempotent."""
        k = self.keys
        keys = [k.active, k.wait, k.paused, k.job(job_id), k.meta, k.events, k.delayed, k.prioritized, k.pc,
                k.marker, k.stalled]
        args = [k.job_prefix, now_ms(), "RPUSH" if lifo else "LPUSH", job_id, token, pack_fields(fields)]
        check_reply(await runner.run_script(RETRY_JOB, keys, args, idempotent=False), "retryJob", job_id)

    async def move_to_delayed(
        self,
        runner: ScriptRunner,
        job_id: str,
        token: str,
        *,
        delay_ms: int,
        fields: Mapping[str, str | bytes],
        fetch_next: bool,
    ) -> Fetch:
        """Move an active job to delayed for `delay_ms` (a retry with backoff, moveToDelayed-11),
        counting the attempt; with `fetch_next`, take the next job in the same call."""
        return await self._move_to_delayed(runner, job_id, token, now=now_ms(), delay_ms=delay_ms,
                                           skip_attempt=False, fields=pack_fields(fields), fetch_next=fetch_next)

    async def hand_back(
        self, runner: ScriptRunner, job_id: str, token: str, *, delay_ms: int, fetch_next: bool
    ) -> tuple[Fetch, int]:
        """Give an active job back to the queue, for another worker, without using an attempt:
        moveToDelayed-11 with "skip attempt" (`atm` unchanged, nothing else written), due in
        `delay_ms` (> 0, or this worker's own next fetch would take it again at once); with
        `fetch_next`, take the next job in the same call (docs/shared-queues.md). Returns the
        fetch and the epoch ms the job is due at (what a fetch reply's next delayed time says)."""
        now, delay_ms = now_ms(), max(delay_ms, 1)
        fetch = await self._move_to_delayed(runner, job_id, token, now=now, delay_ms=delay_ms, skip_attempt=True,
                                            fields="", fetch_next=fetch_next)
        return fetch, now + delay_ms

    async def _move_to_delayed(
        self, runner: ScriptRunner, job_id: str, token: str, *, now: int, delay_ms: int, skip_attempt: bool,
        fields: bytes | str, fetch_next: bool,
    ) -> Fetch:
        """moveToDelayed-11: `skip_attempt` leaves `atm` alone; `fields` (msgpacked, or "") are set first."""
        k = self.keys
        keys = [k.marker, k.active, k.prioritized, k.delayed, k.job(job_id), k.events, k.meta, k.stalled, k.wait,
                k.limiter, k.pc]
        args: list[Any] = [k.job_prefix, str(now), job_id, token, delay_ms, "1" if skip_attempt else "0", fields,
                           "1" if fetch_next else "0"]
        if fetch_next:
            args.append(self._fetch_opts(token))
        raw = await runner.run_script(MOVE_TO_DELAYED, keys, args, idempotent=False)
        check_reply(raw, "moveToDelayed", job_id)
        return parse_fetch(raw) if fetch_next else NOTHING

    # -- locks, stalled jobs, limiter ---------------------------------------------------------------

    async def extend_locks(self, runner: ScriptRunner, job_ids: Sequence[str], tokens: Sequence[str]) -> list[str]:
        """Extend the locks of the given jobs by the lock duration (extendLocks-1) and take them
        out of the stalled candidates; returns the ids whose lock was no longer this worker's."""
        args = [self.keys.job_prefix, msgpack.packb(list(tokens), use_bin_type=True),
                msgpack.packb(list(job_ids), use_bin_type=True), self.lock_duration_ms]
        failed = await runner.run_script(EXTEND_LOCKS, [self.keys.stalled], args, idempotent=True)
        return [str(job_id) for job_id in failed or ()]

    async def move_stalled_jobs_to_wait(
        self, runner: ScriptRunner, *, max_stalled_count: int, stalled_interval_ms: int
    ) -> list[str]:
        """BullMQ's stalled check (moveStalledJobsToWait-9): active jobs whose lock expired go back
        to wait (over `max_stalled_count`, marked to fail on their next fetch, `defa`); the rest of
        the active jobs become the next check's candidates. At most one run per interval over all
        workers of the queue (the `stalled-check` key). Returns the ids moved back."""
        k = self.keys
        keys = [k.stalled, k.wait, k.active, k.stalled_check, k.meta, k.paused, k.marker, k.events, k.repeat]
        args = [max_stalled_count, k.job_prefix, now_ms(), stalled_interval_ms]
        moved = await runner.run_script(MOVE_STALLED_JOBS_TO_WAIT, keys, args, idempotent=True)
        return [str(job_id) for job_id in moved or ()]

    async def repair_stall_counters(self, runner: ScriptRunner) -> list[str]:
        """Make the stall counter (`stc`) of every candidate of the next stalled check an integer.

        The stalled-check script takes a job out of `active` and then HINCRBYs its `stc`; on a
        hash whose `stc` is not an integer the script stops there and the job is in no list at
        all. So such counters (no BullMQ writes them; a hand edit or a broken writer does) are
        reset to 0 first. Returns the ids repaired."""
        members = [str(m) for m in await runner.call("SMEMBERS", self.keys.stalled) or ()]
        if not members:
            return []
        counters = await asyncio.gather(*(runner.call("HGET", self.keys.job(m), "stc") for m in members))
        broken = [m for m, value in zip(members, counters, strict=True) if value is not None and not is_counter(value)]
        for job_id in broken:
            await runner.call("HSET", self.keys.job(job_id), "stc", "0")
        return broken

    async def rate_limit_ttl(self, runner: ScriptRunner, max_jobs: int | None = None) -> int:
        """ms until the queue's rate limit lets jobs start again (0: not limited)."""
        args = [max_jobs] if max_jobs is not None else []
        ttl = await runner.run_script(GET_RATE_LIMIT_TTL, [self.keys.limiter, self.keys.meta], args, idempotent=True)
        return max(int(ttl or 0), 0)

    # -- what a running job does ---------------------------------------------------------------------

    async def update_progress(self, runner: ScriptRunner, job_id: str, progress_json: str) -> None:
        k = self.keys
        reply = await runner.run_script(
            UPDATE_PROGRESS, [k.job(job_id), k.events, k.meta], [job_id, progress_json], idempotent=True
        )
        check_reply(reply, "updateProgress", job_id)

    async def add_log(self, runner: ScriptRunner, job_id: str, line: str, keep_logs: int | None) -> int:
        """Append a line to the job's log list (trimmed to the last `keep_logs`); returns its length."""
        reply = await runner.run_script(
            ADD_LOG, [self.keys.job(job_id), self.keys.logs(job_id)], [job_id, line, keep_logs or ""], idempotent=False
        )
        return int(check_reply(reply, "addLog", job_id))

    async def update_data(self, runner: ScriptRunner, job_id: str, data_json: str) -> None:
        reply = await runner.run_script(UPDATE_DATA, [self.keys.job(job_id)], [data_json], idempotent=True)
        check_reply(reply, "updateData", job_id)


def pack_fields(fields: Mapping[str, str | bytes]) -> bytes:
    """Job fields for a script's "fields to update" argument: a msgpacked flat list
    `[field, value, ...]`, set with HMSET by the script before it does anything else."""
    flat: list[str | bytes] = []
    for name, value in fields.items():
        flat += (name, value)
    packed: bytes = msgpack.packb(flat, use_bin_type=True)
    return packed


def wire_text(text: str) -> str | bytes:
    """A job id or key as sent back to Redis: invalid UTF-8 (kept as surrogates when the reply was
    decoded with `surrogateescape`) goes back as the original bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "backslashreplace") if type(value) is bytes else str(value)

