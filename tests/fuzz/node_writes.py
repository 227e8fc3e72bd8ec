"""Job hashes, list entries, markers and events written the way Node bullmq 5.40.0 writes them.

The layout was read from what the real Node fixture wrote (docs/fuzz.md, "What Node 5.40.0
writes"; `test_node_shape.py` re-checks it against Node on every run):

* `Queue.add` sends the options msgpacked to the Lua script, which stores them with `cjson.encode`:
  numbers as `%.14g` (`1e+20`, `1.844674407371e+19`), `/` escaped as `\\/`, an empty array as
  `{}`, null members dropped, `attempts` always present (0 unless given). `data` is Node's own
  `JSON.stringify` text.
* One HMSET: `name data opts timestamp delay priority`, then `parentKey parent` for a flow child,
  then `rjk` for a scheduler's job.
* Placement: `LPUSH wait` (`RPUSH` with `lifo`); `ZADD prioritized priority*2^32 + INCR(pc)`;
  `ZADD delayed (timestamp+delay)*4096 + n` (n counts earlier jobs due in the same millisecond).
  The marker: `ZADD marker 0 "0"` for a job ready now, `ZADD marker <due ms> "1"` for a delayed one.
  `INCR id` for every job, custom id or not.
* Events: `added` (jobId, name) then `waiting` or `delayed` (jobId, delay).
* A job a worker took and lost (stalled): in `active`, in the `stalled` set the last stall check
  wrote, no lock, `processedOn` and `ats` set, an `active` event.
* A flow parent: in `waiting-children` (score: its timestamp), its children's job keys in
  `<parent key>:dependencies`.

Everything is bytes, so a test can put any byte string in any field, id or key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.wire.keys import QueueKeys

# Where a planted job sits, and so which fetch path or script meets it first.
WAIT = "wait"
WAIT_LIFO = "wait-lifo"
PRIORITIZED = "prioritized"
DELAYED = "delayed"
STALLED = "stalled"
WAITING_CHILDREN = "waiting-children"
PLACES = (WAIT, WAIT_LIFO, PRIORITIZED, DELAYED, STALLED, WAITING_CHILDREN)

# Node's score layout (addJobWithPriority, getDelayedScore).
PRIORITY_SHIFT = 0x100000000
DELAYED_SHIFT = 0x1000
# What Node 5.40.0 writes into the queue's meta hash on the first add.
NODE_VERSION = b"bullmq:5.40.0"
MAX_LEN_EVENTS = b"10000"


@dataclass(frozen=True, slots=True)
class PlantedJob:
    """One job hash and where it goes. `fields` keep Node's HMSET order."""

    job_id: bytes
    fields: tuple[tuple[bytes, bytes], ...]
    place: str
    priority: int = 0
    due_ms: int = 0
    # Flow parent only: the ids (in the same queue) of the children it waits for.
    children: tuple[bytes, ...] = field(default=())

    def field(self, name: bytes) -> bytes | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None


def cjson_encode(value: Any) -> bytes:
    """Options text as the Lua `cjson.encode` of Node's msgpacked options writes it."""
    out: list[str] = []
    _cjson_write(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def _cjson_write(value: Any, out: list[str]) -> None:
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("cjson.encode refuses NaN and Infinity: Node cannot write them through Queue.add")
        out.append(f"{number:.14g}")
    elif isinstance(value, str):
        out.append(_cjson_quote(value))
    elif isinstance(value, dict):
        # msgpack nil arrives in Lua as a missing member.
        items = [(k, v) for k, v in value.items() if v is not None]
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            out.append(_cjson_quote(str(key)))
            out.append(":")
            _cjson_write(item, out)
        out.append("}")
    elif isinstance(value, list):
        if not value:
            out.append("{}")  # an empty Lua table is encoded as an object
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _cjson_write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


_CJSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t"}


def _cjson_quote(text: str) -> str:
    parts = ['"']
    for ch in text:
        escaped = _CJSON_ESCAPES.get(ch)
        if escaped is not None:
            parts.append(escaped)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def job_key(keys: QueueKeys, job_id: bytes) -> bytes:
    return keys.job_prefix.encode() + job_id


async def plant(client: aioredis.Redis, keys: QueueKeys, jobs: Iterable[PlantedJob]) -> None:
    """Write each job as Node would have left it (see the module docstring)."""
    delayed_in_ms: dict[int, int] = {}
    for job in jobs:
        key = job_key(keys, job.job_id)
        pipe = client.pipeline(transaction=True)
        pipe.hsetnx(keys.meta, "opts.maxLenEvents", MAX_LEN_EVENTS)
        pipe.hsetnx(keys.meta, "version", NODE_VERSION)
        pipe.incr(keys.id)
        # HSET with every field in one call, in the given order (HMSET's order).
        flat: list[bytes] = [b for pair in job.fields for b in pair]
        if flat:
            pipe.execute_command("HSET", key, *flat)
        name = job.field(b"name") or b""
        pipe.xadd(keys.events, {b"event": b"added", b"jobId": job.job_id, b"name": name})
        if job.place in (WAIT, WAIT_LIFO):
            (pipe.rpush if job.place == WAIT_LIFO else pipe.lpush)(keys.wait, job.job_id)
            pipe.zadd(keys.marker, {b"0": 0})
            pipe.xadd(keys.events, {b"event": b"waiting", b"jobId": job.job_id})
        elif job.place == PRIORITIZED:
            counter = await client.incr(keys.pc)
            pipe.zadd(keys.prioritized, {job.job_id: job.priority * PRIORITY_SHIFT + counter % PRIORITY_SHIFT})
            pipe.zadd(keys.marker, {b"0": 0})
            pipe.xadd(keys.events, {b"event": b"waiting", b"jobId": job.job_id})
        elif job.place == DELAYED:
            offset = delayed_in_ms.get(job.due_ms, 0)
            delayed_in_ms[job.due_ms] = offset + 1
            pipe.zadd(keys.delayed, {job.job_id: job.due_ms * DELAYED_SHIFT + offset})
            pipe.zadd(keys.marker, {b"1": job.due_ms})
            pipe.xadd(keys.events, {b"event": b"delayed", b"jobId": job.job_id, b"delay": str(job.due_ms)})
        elif job.place == STALLED:
            pipe.lpush(keys.active, job.job_id)
            pipe.sadd(keys.stalled, job.job_id)
            pipe.xadd(keys.events, {b"event": b"waiting", b"jobId": job.job_id})
            pipe.xadd(keys.events, {b"event": b"active", b"jobId": job.job_id, b"prev": b"waiting"})
        elif job.place == WAITING_CHILDREN:
            timestamp = job.field(b"timestamp") or b"0"
            pipe.zadd(keys.waiting_children, {job.job_id: int(timestamp)})
            pipe.xadd(keys.events, {b"event": b"waiting-children", b"jobId": job.job_id})
            if job.children:
                pipe.sadd(key + b":dependencies", *(job_key(keys, child) for child in job.children))
        else:
            raise ValueError(f"unknown place {job.place!r}")
        await pipe.execute()
