"""Find orphaned jobs: job hashes that are in no list or set of their queue, so no worker, retry
or clean will ever see them (twenty_jobs/wire/orphans.py says how they happen). Reads only.

The queue's key space is SCANned in batches (`scan_count` keys per call, at most `max_keys` keys
in all), so even a Redis with millions of finished jobs is read in bounded steps. Each candidate
is first checked cheaply (ZMSCORE against the sorted sets, then the queue's lists read once; Redis
>= 6.2, which BullMQ recommends); the
few left are checked again in one MULTI transaction per batch, so a job that moved between
states while the scan ran is never reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from twenty_jobs.wire.job import JobRecord, MalformedJob, parse_job_hash
from twenty_jobs.wire.keys import QueueKeys, glob_escape
from twenty_jobs.wire.orphans import dependencies_key, job_id_of, scheduler_id_of, state_lists, state_sets

SCAN_COUNT = 1000
# Ids read per LRANGE when a queue's lists are loaded for the cheap membership check.
LIST_CHUNK = 10_000
# Suspects re-checked per MULTI transaction (each LPOS walks a list: keep a transaction short).
VERIFY_CHUNK = 100


@dataclass(slots=True)
class Orphan:
    """One job hash that is in no state of its queue, as read in the confirming transaction."""

    queue: str
    job_id: str
    fields: dict[str, str]
    job: JobRecord | None  # None when the hash is not a readable job (see `problem`)
    problem: str | None
    locked: bool
    pending_children: int
    name: str | None = None


@dataclass(slots=True)
class ScanProgress:
    """How far a scan got: keys examined, and whether it covered the whole key space."""

    keys_examined: int = 0
    complete: bool = True


@dataclass(slots=True)
class OrphanScan:
    """What `find_orphans` found: every orphan counted, the first `sample` of them kept."""

    queues: list[str]
    progress: ScanProgress = field(default_factory=ScanProgress)
    count: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)
    sample: list[Orphan] = field(default_factory=list)


async def find_orphans(
    client: aioredis.Redis,
    prefix: str,
    queues: list[str],
    *,
    scan_count: int = SCAN_COUNT,
    max_keys: int | None = None,
    sample: int = 20,
) -> OrphanScan:
    """Count the orphans of `queues` (at most `max_keys` keys examined) and keep `sample` of them."""
    result = OrphanScan(list(queues))
    async for batch in iter_orphans(client, prefix, queues, scan_count=scan_count, max_keys=max_keys,
                                    progress=result.progress):
        for orphan in batch:
            result.count += 1
            result.by_queue[orphan.queue] = result.by_queue.get(orphan.queue, 0) + 1
            if len(result.sample) < sample:
                result.sample.append(orphan)
    return result


async def iter_orphans(
    client: aioredis.Redis,
    prefix: str,
    queues: list[str],
    *,
    scan_count: int = SCAN_COUNT,
    max_keys: int | None = None,
    progress: ScanProgress | None = None,
) -> AsyncIterator[list[Orphan]]:
    """The orphans of `queues`, one list per SCAN batch (each orphan once)."""
    progress = progress if progress is not None else ScanProgress()
    if not queues:
        return
    by_length = sorted((QueueKeys(prefix, q) for q in dict.fromkeys(queues)), key=lambda k: -len(k.base))
    # One SCAN for all queues: SCAN visits the whole keyspace whatever the pattern.
    pattern = glob_escape(by_length[0].job_prefix) + "*" if len(by_length) == 1 else glob_escape(prefix) + ":*"
    listed: dict[str, set[str]] = {}
    reported: set[tuple[str, str]] = set()
    cursor: Any = 0
    while True:
        cursor, raw_keys = await client.scan(cursor, match=pattern, count=scan_count)
        keys = [_text(k) for k in raw_keys]
        if max_keys is not None and progress.keys_examined + len(keys) > max_keys:
            keys = keys[: max(0, max_keys - progress.keys_examined)]
            progress.complete = False
        progress.keys_examined += len(keys)
        candidates = _candidates(keys, by_length)
        if candidates:
            found = await _orphans_among(client, candidates, listed)
            fresh = [o for o in found if (o.queue, o.job_id) not in reported]
            reported.update((o.queue, o.job_id) for o in fresh)
            if fresh:
                yield fresh
        if not progress.complete or int(cursor) == 0:
            return


def _candidates(keys: list[str], by_length: list[QueueKeys]) -> list[tuple[QueueKeys, str]]:
    """(queue keys, job id) for every key that may be a job hash, once each."""
    out: dict[tuple[str, str], tuple[QueueKeys, str]] = {}
    for key in keys:
        for qk in by_length:  # the longest queue name first: `a:b` before `a`
            if key.startswith(qk.job_prefix):
                job_id = job_id_of(qk, key)
                if job_id is not None:
                    out[(qk.queue, job_id)] = (qk, job_id)
                break
    return list(out.values())


async def _orphans_among(
    client: aioredis.Redis, candidates: list[tuple[QueueKeys, str]], listed: dict[str, set[str]]
) -> list[Orphan]:
    # 1. The sorted sets, one ZMSCORE per set for the whole batch, each asked only about the ids
    # no set before it holds (most job hashes are finished jobs: `completed` comes first). A
    # `repeat:<x>:<millis>` key whose `x:<millis>` is a member of `repeat` is a job scheduler's
    # hash, not a job: skipped too.
    housed: set[tuple[str, str]] = set()
    groups: dict[str, tuple[QueueKeys, list[str]]] = {}
    for qk, job_id in candidates:
        groups.setdefault(qk.queue, (qk, []))[1].append(job_id)
    for qk, ids in groups.values():
        left = ids
        for key in state_sets(qk):
            scores = await client.zmscore(key, left)
            left = [job_id for job_id, score in zip(left, scores, strict=True) if score is None]
            if not left:
                break
        repeat = [(job_id, member) for job_id in left if (member := scheduler_id_of(job_id)) is not None]
        if repeat:
            scores = await client.zmscore(qk.repeat, [member for _, member in repeat])
            left = list(set(left) - {job_id for (job_id, _), score in zip(repeat, scores, strict=True)
                                    if score is not None})
        housed.update((qk.queue, job_id) for job_id in set(ids) - set(left))
    unsorted = [(qk, job_id) for qk, job_id in candidates if (qk.queue, job_id) not in housed]
    # 2. The lists, read once per queue per scan (a list can be long: no LPOS per job here).
    suspects = []
    for qk, job_id in unsorted:
        if qk.queue not in listed:
            listed[qk.queue] = await _list_members(client, qk)
        if job_id not in listed[qk.queue]:
            suspects.append((qk, job_id))
    # 3. The few left, checked again atomically: a job may have moved since steps 1 and 2.
    orphans: list[Orphan] = []
    for start in range(0, len(suspects), VERIFY_CHUNK):
        orphans += await _confirm(client, suspects[start : start + VERIFY_CHUNK])
    return orphans


async def _list_members(client: aioredis.Redis, qk: QueueKeys) -> set[str]:
    members: set[str] = set()
    for key in state_lists(qk):
        start = 0
        while True:
            chunk = await client.lrange(key, start, start + LIST_CHUNK - 1)  # type: ignore[misc]
            members.update(_text(m) for m in chunk)
            if len(chunk) < LIST_CHUNK:
                break
            start += LIST_CHUNK
    return members


async def _confirm(client: aioredis.Redis, suspects: list[tuple[QueueKeys, str]]) -> list[Orphan]:
    pipe = client.pipeline(transaction=True)
    for qk, job_id in suspects:
        for key in state_sets(qk):
            pipe.zscore(key, job_id)
        for key in state_lists(qk):
            pipe.lpos(key, job_id)
        pipe.hgetall(qk.job(job_id))
        pipe.exists(qk.lock(job_id))
        pipe.scard(dependencies_key(qk, job_id))
    per = len(state_sets(suspects[0][0])) + len(state_lists(suspects[0][0])) + 3
    replies = await pipe.execute(raise_on_error=False)
    orphans = []
    for i, (qk, job_id) in enumerate(suspects):
        *homes, fields, locked, children = replies[i * per : i * per + per]
        if any(h is not None for h in homes) or isinstance(fields, ResponseError) or not fields:
            continue  # housed after all, gone, or not a hash (WRONGTYPE)
        text_fields = {_text(k): _text(v) for k, v in fields.items()}
        try:
            job: JobRecord | None = parse_job_hash(job_id, text_fields)
            problem, name = None, job.name if job is not None else None
        except MalformedJob as exc:
            job, problem, name = None, str(exc), exc.name
        orphans.append(Orphan(qk.queue, job_id, text_fields, job, problem, bool(locked),
                              children if isinstance(children, int) else 0, name))
    return orphans


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
