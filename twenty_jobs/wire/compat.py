"""Mixed-version guard: what changes when Node bullmq < 6 (Twenty pins 5.40.0) shares a queue with
the Python port, whose Lua scripts are Node bullmq 6.4.0's (bullmq-python.md §2, §5).

Three hazards, all proven against real Node (interop_tests/test_compat_interop.py):

* **pause/resume loses jobs.** Since Node 6 a paused queue keeps adding to `wait` and only the
  `meta.paused` flag stops fetching; Node 5 moves jobs to a separate `paused` list instead, and its
  `resume()` RENAMEs `paused` over `wait`. So after a pause from Python, jobs Python adds go to
  `wait`, and a Node 5 resume overwrites that list: those jobs vanish from every list.
  `refuse_pause_resume` refuses it unless forced.
* **Stall counters are split** (Node < 5.49): Node counts stalls in the job hash field
  `stalledCounter`, the port in `stc`. With a stall checker on both sides a job may stall up to
  `maxStalledCount` times on each side before it is failed.
* **Deferred failure (`defa`) is ignored** (Node < 5.49.2): the port's stall checker does not fail
  an over-stalled job itself; it marks it `defa` and moves it back to `wait` for the fetching
  worker to fail. An older Node worker runs it again instead (and may complete it).

Plus **legacy repeatable jobs** (the `repeat` job option of bullmq < 6, Twenty's oldest cron
driver): the port treats every `repeat` entry as a job scheduler, so a legacy repeatable advanced by
a Python worker loses its data or silently stops (bullmq-python.md §4).

The Node version comes from the queue's meta hash: every Node `Queue` writes
`HSET <prefix>:<queue>:meta version "bullmq:<version>"` when it connects (Twenty's server creates
one Queue per queue at boot). The port never writes it, so the value is the last Node bullmq that
opened the queue.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from twenty_jobs.errors import ConfigError
from twenty_jobs.wire.keys import meta_key, queue_key

# The Node bullmq whose Lua the pinned Python port (bullmq==3.4.4) ships, byte for byte.
PORT_LUA_NODE_VERSION = "6.4.0"
# Node 6.0.0 retired the `paused` list (pause = a flag; resume never RENAMEs).
PAUSED_LIST_RETIRED = (6, 0, 0)
# #3218: the stalled counter field was renamed `stalledCounter` -> `stc` in 5.49.0.
STC_FIELD_SINCE = (5, 49, 0)
# Node workers fail jobs marked `defa` (deferred failure) from 5.49.2 on.
DEFERRED_FAILURE_SINCE = (5, 49, 2)

_VERSION = re.compile(r"^(?:bullmq:)?v?(\d+)\.(\d+)\.(\d+)")
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
# Only job schedulers write these fields into `repeat:<id>`: `ic` (iteration count, on each
# iteration), `data`/`opts` (the template: Twenty's addCron always stores opts), `offset`.
_SCHEDULER_ONLY_FIELDS = frozenset({"ic", "data", "opts", "offset"})


@dataclass(frozen=True, order=True)
class NodeVersion:
    """A Node bullmq version as read from a queue's meta hash (`bullmq:5.40.0`)."""

    major: int
    minor: int
    patch: int
    raw: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str | bytes | None) -> NodeVersion | None:
        """`bullmq:5.40.0`, `5.40.0` or `6.0.0-beta.1` -> NodeVersion; None for anything else."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not text:
            return None
        match = _VERSION.match(text.strip())
        if match is None:
            return None
        major, minor, patch = (int(g) for g in match.groups())
        return cls(major, minor, patch, text.strip())

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def below_6(self) -> bool:
        return self.triple < PAUSED_LIST_RETIRED

    @property
    def stall_counter_field(self) -> str:
        """The job hash field this version's stall checker increments."""
        return "stc" if self.triple >= STC_FIELD_SINCE else "stalledCounter"

    @property
    def honours_deferred_failure(self) -> bool:
        """Whether this version's workers fail a job the port's stall checker marked `defa`."""
        return self.triple >= DEFERRED_FAILURE_SINCE

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_meta_version(value: str | bytes | None) -> NodeVersion | None:
    """The `version` field of a queue's meta hash, parsed (None when absent or not bullmq's)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not value or not value.startswith("bullmq:"):
        return None
    return NodeVersion.parse(value)


async def read_node_version(client: aioredis.Redis, prefix: str, queue: str) -> NodeVersion | None:
    """`HGET <prefix>:<queue>:meta version`: the last Node bullmq that opened the queue, or None
    when no Node Queue has (yet) announced itself there."""
    value = await client.hget(meta_key(prefix, queue), "version")  # type: ignore[misc]
    return parse_meta_version(value)


def node_major_below_6(version: NodeVersion | str | bytes | None) -> bool:
    """True when a Node bullmq below 6 shares the queue (None/unknown: False, nothing to guard)."""
    if not isinstance(version, NodeVersion):
        version = NodeVersion.parse(version)
    return version is not None and version.below_6


# -- legacy repeatable jobs ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LegacyRepeatable:
    """A pre-job-scheduler repeatable job found in a queue's `repeat` sorted set."""

    queue: str
    key: str  # the member of the `repeat` zset
    shape: str  # "md5" (bullmq 2-5: md5 key + hash), "colon" (name:id:endDate:tz:pattern, no hash)
    name: str | None
    pattern: str | None
    every_ms: int | None
    next_millis: int

    @property
    def schedule(self) -> str:
        if self.pattern:
            return f"pattern '{self.pattern}'"
        if self.every_ms:
            return f"every {self.every_ms} ms"
        return "unknown schedule"


def legacy_repeat_key(name: str, *, job_id: str = "", end_date: int | None = None, tz: str = "",
                      pattern: str | None = None, every: int | None = None) -> str:
    """bullmq 5's `getRepeatConcatOptions`: `name:jobId:endDate:tz:pattern-or-every`; its md5 is the
    `repeat` member of a legacy repeatable (checked against Node 5.40.0)."""
    suffix = pattern if pattern else (str(every) if every is not None else "")
    return f"{name}:{job_id}:{end_date if end_date else ''}:{tz}:{suffix}"


def is_legacy_repeatable(member: str, fields: dict[str, str]) -> bool:
    """Tell a legacy repeatable from a job scheduler, given its `repeat` member and `repeat:<member>`
    hash.

    Node >= 5.76.1 probes only for `ic`, but 5.40.0 writes `ic` only from the first iteration on, so a
    fresh 5.40 scheduler has none; a template (`opts`/`data`) marks a scheduler too. Otherwise the
    member's shape decides: legacy keys are an md5 hex digest (with a hash holding only
    name/pattern/every/tz/endDate) or the older `name:id:endDate:tz:pattern` (no hash at all).
    """
    if not fields:
        return True
    if _SCHEDULER_ONLY_FIELDS & fields.keys():
        return False
    return bool(_MD5_HEX.match(member)) or member.count(":") >= 4


async def find_legacy_repeatables(client: aioredis.Redis, prefix: str, queue: str) -> list[LegacyRepeatable]:
    """Every legacy repeatable job on `queue` (empty when it only has job schedulers)."""
    # withscores=True: (member, score) pairs (redis-py 8's stubs type every form of the reply).
    entries: list[tuple[str | bytes, float]] = await client.zrange(  # type: ignore[assignment]
        queue_key(prefix, queue, "repeat"), 0, -1, withscores=True
    )
    if not entries:
        return []
    members = [_text(m) for m, _ in entries]
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(queue_key(prefix, queue, f"repeat:{member}"))
    hashes = await pipe.execute()
    found = []
    for member, (_, score), raw_fields in zip(members, entries, hashes, strict=True):
        raw_fields = raw_fields or {}
        fields = {_text(k): _text(v) for k, v in raw_fields.items()}
        if not is_legacy_repeatable(member, fields):
            continue
        if fields:
            name, pattern, every = fields.get("name"), fields.get("pattern"), fields.get("every")
            shape = "md5" if _MD5_HEX.match(member) else "colon"
        else:
            parts = member.split(":")  # the pattern itself may contain colons
            name, pattern, every = parts[0] or None, ":".join(parts[4:]) or None, None
            shape = "colon"
        every_ms = int(every) if every and every.isdigit() else None
        if pattern and every_ms is None and pattern.isdigit() and not fields:
            every_ms = int(pattern)  # colon keys put `every` where the pattern goes
            pattern = None
        found.append(LegacyRepeatable(queue, member, shape, name, pattern, every_ms, int(score)))
    return found


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def md5_of_legacy_key(concat_key: str) -> str:
    """The member bullmq 5 stores for a legacy repeatable whose concatenated options are `concat_key`."""
    return hashlib.md5(concat_key.encode(), usedforsecurity=False).hexdigest()


# -- the startup warning -------------------------------------------------------------------------

def startup_warning(
    queue: str, version: NodeVersion | None, legacy: Sequence[LegacyRepeatable] = ()
) -> str | None:
    """The warning a Python worker logs when it starts serving `queue` (None: nothing to say).

    It names the Node version, explains each hazard that applies to it, and says what to do.
    """
    lines: list[str] = []
    if version is not None and version.below_6:
        lines.append(
            f"queue '{queue}' is shared with Node bullmq {version} (below 6); twenty-jobs runs the "
            f"Lua of Node bullmq {PORT_LUA_NODE_VERSION}. Mixed-version hazards on this queue:"
        )
        lines.append(
            "- pause/resume: twenty-jobs refuses to pause or resume this queue (a Node 5 resume RENAMEs "
            "its `paused` list over `wait`, and jobs added from Python while paused are lost). Pause "
            "and resume it from Twenty/Node, or pass --force if no Node 5 process will ever resume it."
        )
        if version.stall_counter_field != "stc":
            lines.append(
                f"- stall counters: Node {version} counts stalls in the job field `stalledCounter`, "
                "twenty-jobs in `stc`. With stall checkers on both sides each counts separately, so a "
                "job can stall up to maxStalledCount times per side (in effect doubled) before it fails."
            )
        if not version.honours_deferred_failure:
            lines.append(
                "- deferred failure: when the twenty-jobs stall checker finds a job over maxStalledCount "
                "it marks it failed-on-fetch (`defa`) and moves it back to wait; a Node worker below "
                f"5.49.2 (this one is {version}) ignores the mark and runs the job again instead of "
                "failing it."
            )
        lines.append(
            "Fix: upgrade Twenty's bullmq to 6.x (ideally 6.4), or keep each queue on one side "
            "(WORKER_EXCLUDED_QUEUES on the Node worker for the queues twenty-jobs serves)."
        )
    if legacy:
        described = ", ".join(f"{r.name or r.key} ({r.schedule})" for r in legacy[:5])
        more = f" and {len(legacy) - 5} more" if len(legacy) > 5 else ""
        lines.append(
            f"queue '{queue}' holds {len(legacy)} legacy repeatable job(s) (the `repeat` job option of "
            f"bullmq < 6, not job schedulers): {described}{more}. A twenty-jobs worker treats them as "
            "job schedulers, so their next iterations lose their data or stop. Remove them "
            "(Node: queue.removeRepeatableByKey(key)) and register the crons again as job schedulers "
            "(Twenty: `cron:register:all`; twenty-jobs: `twenty-jobs cron register`)."
        )
    return "\n".join(lines) if lines else None


# -- pause / resume ------------------------------------------------------------------------------

class PauseResumeRefused(ConfigError):
    """Pausing or resuming from Python was refused because Node bullmq < 6 shares the queue."""


async def refuse_pause_resume(
    client: aioredis.Redis, prefix: str, queue: str, *, action: str = "pause", force: bool = False
) -> NodeVersion | None:
    """Raise PauseResumeRefused when a Node bullmq below 6 shares `queue` and `force` is False.

    Call it before the port's `Queue.pause()` / `Queue.resume()`. Returns the Node version found
    (None when no Node has announced itself on the queue, which is allowed).
    """
    version = await read_node_version(client, prefix, queue)
    if version is not None and version.below_6 and not force:
        raise PauseResumeRefused(
            f"refusing to {action} queue '{queue}' from Python: Node bullmq {version} (below 6) shares it. "
            "Node 5 keeps paused jobs in a separate `paused` list and its resume() RENAMEs that list over "
            "`wait`, so jobs added from Python while the queue is paused are lost. "
            f"{action.capitalize()} it from Twenty/Node instead, or pass --force if no Node bullmq 5 "
            "process will resume it."
        )
    return version


# -- everything for one queue --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QueueCompat:
    """What the guard found on one queue."""

    queue: str
    node_version: NodeVersion | None
    legacy_repeatables: tuple[LegacyRepeatable, ...]

    @property
    def node_below_6(self) -> bool:
        return self.node_version is not None and self.node_version.below_6

    @property
    def warning(self) -> str | None:
        return startup_warning(self.queue, self.node_version, self.legacy_repeatables)


async def check_queue(client: aioredis.Redis, prefix: str, queue: str) -> QueueCompat:
    """Read the Node version and the legacy repeatables of `queue` (2 + n Redis round trips)."""
    version = await read_node_version(client, prefix, queue)
    legacy = await find_legacy_repeatables(client, prefix, queue)
    return QueueCompat(queue, version, tuple(legacy))


async def check_queues(client: aioredis.Redis, prefix: str, queues: Iterable[str]) -> list[QueueCompat]:
    return [await check_queue(client, prefix, queue) for queue in queues]
