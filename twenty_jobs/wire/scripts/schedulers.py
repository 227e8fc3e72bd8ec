"""Job schedulers (what Twenty's `addCron` creates): create or update, remove, read, and the next
iteration a worker materializes when it fetches an iteration (as Node's worker does at fetch time).

A scheduler is the member `<id>` of the queue's `repeat` sorted set (score: the next run, epoch ms)
with its hash `repeat:<id>`; each iteration is a delayed job `repeat:<id>:<millis>`. For `every`
the scripts compute the next run; for a cron `pattern` the caller does (Node with cron-parser,
here croniter with the seconds field first, as cron-parser reads 6-field patterns).
docs/bullmq-wire.md, "Job schedulers".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack
from croniter import croniter

from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import ScriptRunner, script
from twenty_jobs.wire.scripts.errors import check_reply
from twenty_jobs.wire.scripts.queue import ITERATION_ID_PREFIX, SHORT_OPTION_NAMES
from twenty_jobs.wire.scripts.worker import compact_json, now_ms

ADD_JOB_SCHEDULER = script("addJobScheduler")
UPDATE_JOB_SCHEDULER = script("updateJobScheduler")
REMOVE_JOB_SCHEDULER = script("removeJobScheduler")
GET_JOB_SCHEDULER = script("getJobScheduler")

# A legacy repeatable key (bullmq < 6): `name:id:endDate:tz:<cron pattern | every ms>`.
_LEGACY_KEY = re.compile(r"^[^:]*:[^:]*:(\d*):[^:]*:(.+)$")


class InvalidSchedule(ValueError):
    """A repeat option that no next run can be computed from (bad cron pattern or time zone)."""


def is_legacy_repeat_key(key: str) -> bool:
    """Node 6's `hasLegacyRepeatableKeyShape`: a key whose fifth part is a cron pattern (has a
    space) or a number of ms. Such jobs belong to a legacy repeatable, not a job scheduler."""
    match = _LEGACY_KEY.match(key)
    if match is None:
        return False
    suffix = match.group(2)
    return " " in suffix or suffix.isdigit()


def next_cron_millis(pattern: str, after_ms: int, tz: str | None = None, start_date_ms: int | None = None) -> int:
    """The first run of `pattern` strictly after `after_ms` (or after `start_date_ms` when later),
    in time zone `tz` (UTC when None)."""
    base = max(after_ms, start_date_ms or 0)
    try:
        zone = ZoneInfo(tz) if tz else UTC
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(f"unknown time zone {tz!r}: {exc}") from None
    try:
        itr = croniter(pattern, datetime.fromtimestamp(base / 1000, tz=zone), second_at_beginning=True)
        following: datetime = itr.get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueError subclasses
        raise InvalidSchedule(f"invalid cron pattern {pattern!r}: {exc}") from None
    return int(following.timestamp() * 1000)


def _to_millis(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Repeat:
    """A scheduler's schedule: a cron `pattern` or `every` ms (exactly one), plus its options."""

    pattern: str | None = None
    every: int | None = None
    tz: str | None = None
    limit: int | None = None
    start_date: int | None = None
    end_date: int | None = None
    offset: int | None = None

    @classmethod
    def from_opts(cls, repeat: Mapping[str, Any]) -> Repeat:
        every = repeat.get("every")
        return cls(
            pattern=repeat.get("pattern") or None,
            every=int(every) if isinstance(every, int | float) and not isinstance(every, bool) and every else None,
            tz=repeat.get("tz") or None,
            limit=repeat.get("limit") if isinstance(repeat.get("limit"), int) else None,
            start_date=_to_millis(repeat.get("startDate")),
            end_date=_to_millis(repeat.get("endDate")),
            offset=repeat.get("offset") if isinstance(repeat.get("offset"), int) else None,
        )

    @property
    def every_offset(self) -> int | None:
        """The offset of an `every` schedule (a cron pattern has none; 0 is none)."""
        return self.offset if self.every and self.offset else None

    def check(self) -> None:
        if bool(self.pattern) == bool(self.every):
            raise InvalidSchedule("a job scheduler needs exactly one of a cron pattern or `every` ms")

    def scheduler_opts(self, name: str) -> dict[str, Any]:
        """What addJobScheduler stores in the scheduler's hash."""
        values = {"name": name, "tz": self.tz, "pattern": self.pattern, "every": self.every, "limit": self.limit,
                  "offset": self.every_offset, "startDate": self.start_date,
                  "endDate": self.end_date}
        return {k: v for k, v in values.items() if v is not None}

    def as_opts(self) -> dict[str, Any]:
        values = {"pattern": self.pattern, "every": self.every, "tz": self.tz, "limit": self.limit,
                  "startDate": self.start_date, "endDate": self.end_date}
        return {k: v for k, v in values.items() if v is not None}


def _iteration_opts(
    template_opts: Mapping[str, Any], scheduler_id: str, repeat: Mapping[str, Any], next_millis: int,
    count: int, offset: int | None, now: int,
) -> dict[str, Any]:
    """The options of the iteration job `repeat:<id>:<next_millis>` (Node's `getNextJobOpts`)."""
    merged_repeat = {**repeat, "offset": offset, "count": count,
                     "startDate": _to_millis(repeat.get("startDate")), "endDate": _to_millis(repeat.get("endDate"))}
    merged_repeat = {k: v for k, v in merged_repeat.items() if v is not None and k != "immediately"}
    return {
        **template_opts,
        "jobId": f"{ITERATION_ID_PREFIX}{scheduler_id}:{next_millis}",
        "delay": max(next_millis + (offset or 0) - now, 0),
        "timestamp": now,
        "prevMillis": next_millis,
        "repeatJobKey": scheduler_id,
        "repeat": merged_repeat,
    }


def _short_names(opts: Mapping[str, Any]) -> dict[str, Any]:
    return {SHORT_OPTION_NAMES.get(k, k): v for k, v in opts.items()}


async def add_job_scheduler(
    runner: ScriptRunner,
    keys: QueueKeys,
    scheduler_id: str,
    repeat: Repeat,
    *,
    name: str,
    data: Any,
    template_opts: Mapping[str, Any],
) -> str:
    """Create or replace scheduler `scheduler_id` and queue its first iteration (Node's
    `upsertJobScheduler`); returns the iteration's job id."""
    repeat.check()
    now = now_ms()
    next_millis = now
    if repeat.pattern:
        next_millis = max(next_cron_millis(repeat.pattern, now, repeat.tz, repeat.start_date), now)
    job_opts = _iteration_opts(template_opts, scheduler_id, repeat.as_opts(), next_millis, 1, repeat.every_offset, now)
    k = keys
    script_keys = [k.repeat, k.delayed, k.wait, k.paused, k.meta, k.prioritized, k.marker, k.id, k.events, k.pc,
                   k.active]
    args = [
        next_millis,
        msgpack.packb(repeat.scheduler_opts(name), use_bin_type=True),
        scheduler_id,
        compact_json({} if data is None else data),
        msgpack.packb(_short_names(template_opts), use_bin_type=True),
        msgpack.packb(_short_names(job_opts), use_bin_type=True),
        now,
        k.job_prefix,
        "",
    ]
    reply = check_reply(await runner.run_script(ADD_JOB_SCHEDULER, script_keys, args, idempotent=True),
                        "addJobScheduler", scheduler_id)
    return str(reply[0])


async def remove_job_scheduler(runner: ScriptRunner, keys: QueueKeys, scheduler_id: str) -> bool:
    """Remove the scheduler and its pending iteration; False when there was none."""
    reply = await runner.run_script(REMOVE_JOB_SCHEDULER, [keys.repeat, keys.delayed, keys.events],
                                    [scheduler_id, keys.job_prefix], idempotent=True)
    return bool(reply == 0)


@dataclass(frozen=True, slots=True)
class SchedulerRecord:
    """A scheduler's hash fields as stored, and its next run (epoch ms)."""

    id: str
    fields: dict[str, str]
    next_run: int


async def get_job_scheduler(runner: ScriptRunner, keys: QueueKeys, scheduler_id: str) -> SchedulerRecord | None:
    reply = await runner.run_script(GET_JOB_SCHEDULER, [keys.repeat], [scheduler_id], idempotent=True)
    if not reply or reply[1] is None:
        return None
    flat = reply[0] or []
    it = iter(flat)
    return SchedulerRecord(scheduler_id, dict(zip(it, it, strict=False)), int(float(reply[1])))


async def advance_job_scheduler(
    runner: ScriptRunner,
    keys: QueueKeys,
    scheduler_id: str,
    *,
    producer_job_id: str,
    data: Any,
    opts: Mapping[str, Any],
) -> str | None:
    """Queue the iteration after the fetched iteration `producer_job_id` (Node's worker calls
    `upsertJobScheduler(..., {override: false, producerId})` when it fetches an iteration). The
    script adds it only if `producer_job_id` is the scheduler's current iteration, so a re-fetch
    after a stall or retry adds nothing. Returns the new iteration's id, or None.

    `opts` are the fetched job's stored options (short names, as stored)."""
    raw_repeat = opts.get("repeat")
    repeat_opts: dict[str, Any] = dict(raw_repeat) if isinstance(raw_repeat, Mapping) else {}
    repeat = Repeat.from_opts(repeat_opts)
    previous = repeat_opts.get("count")
    count = (previous if isinstance(previous, int) and not isinstance(previous, bool) else 0) + 1
    if repeat.limit is not None and count > repeat.limit:
        return None
    now = now_ms()
    if repeat.end_date is not None and now > repeat.end_date:
        return None
    prev = opts.get("prevMillis")
    if isinstance(prev, int | float) and not isinstance(prev, bool) and prev > now:
        now = int(prev)
    next_millis = now
    if repeat.pattern:
        next_millis = max(next_cron_millis(repeat.pattern, now, repeat.tz, repeat.start_date), now)
    job_opts = _iteration_opts(opts, scheduler_id, repeat_opts, next_millis, count, repeat.every_offset, now)
    k = keys
    script_keys = [k.repeat, k.delayed, k.wait, k.paused, k.meta, k.prioritized, k.marker, k.id, k.events, k.pc,
                   k.job(producer_job_id), k.active]
    args = [next_millis, scheduler_id, compact_json({} if data is None else data),
            msgpack.packb(job_opts, use_bin_type=True), now, k.job_prefix, producer_job_id]
    reply = await runner.run_script(UPDATE_JOB_SCHEDULER, script_keys, args, idempotent=True)
    return str(reply) if reply else None
