"""`twenty-jobs repair`: put orphaned jobs back where their hash says they belong.

A dry run (the default) only says what it would do. With `apply`, each orphan is re-checked and
written in one WATCH/MULTI transaction on its hash and the queue's meta (so a job deleted, or a
queue paused or resumed, meanwhile is never misplaced), and a per-queue lock keeps two repairs
from putting the same job back twice. Where each job goes: `twenty_jobs.wire.orphans.home_of`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from twenty_jobs.errors import TwentyJobsError
from twenty_jobs.ops.orphans import Orphan, ScanProgress, iter_orphans
from twenty_jobs.wire.counts import is_paused
from twenty_jobs.wire.job import MalformedJob, parse_job_hash
from twenty_jobs.wire.keys import QueueKeys, repair_lock_key
from twenty_jobs.wire.orphans import dependencies_key, home_of, queue_home, state_lists, state_sets

# How long the per-queue repair lock lives without being renewed (renewed after every batch).
LOCK_TTL_MS = 300_000
# Attempts per job when its hash or the queue's meta changes between the check and the write.
WATCH_ATTEMPTS = 5


class RepairLocked(TwentyJobsError):
    """Another `repair --apply` holds the queue's repair lock."""


@dataclass(slots=True)
class RepairAction:
    """One orphan: where it goes (`state`), or why it is left alone (`state` None)."""

    queue: str
    job_id: str
    name: str | None
    added_at: int | None
    state: str | None
    reason: str
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RepairReport:
    applied: bool
    queues: list[str]
    actions: list[RepairAction] = field(default_factory=list)
    progress: ScanProgress = field(default_factory=ScanProgress)

    @property
    def repaired(self) -> list[RepairAction]:
        return [a for a in self.actions if a.done]

    @property
    def left(self) -> list[RepairAction]:
        """Orphans not put back: unreadable hashes (and, in a dry run, every orphan)."""
        return [a for a in self.actions if not a.done]

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "queues": self.queues,
            "keys_examined": self.progress.keys_examined,
            "orphans": len(self.actions),
            "repaired": len(self.repaired),
            "actions": [a.as_dict() for a in self.actions],
        }


async def repair_orphans(
    client: aioredis.Redis,
    prefix: str,
    queues: list[str],
    *,
    apply: bool = False,
    scan_count: int = 1000,
) -> RepairReport:
    """Find every orphan of `queues` and, with `apply`, put each back (see the module docstring)."""
    report = RepairReport(apply, list(queues))
    paused: dict[str, bool] = {}
    async with _locks(client, prefix, queues if apply else []) as renew:
        async for batch in iter_orphans(client, prefix, queues, scan_count=scan_count, progress=report.progress):
            for orphan in batch:
                keys = QueueKeys(prefix, orphan.queue)
                if orphan.queue not in paused:
                    paused[orphan.queue] = await is_paused(client, keys)
                action = _plan(keys, orphan, paused[orphan.queue])
                if apply and action.state is not None:
                    await _put_back(client, keys, action)
                report.actions.append(action)
            await renew()
    return report


def _plan(keys: QueueKeys, orphan: Orphan, paused: bool) -> RepairAction:
    job = orphan.job
    if job is None:
        inspect = f"inspect it with redis-cli HGETALL {keys.job(orphan.job_id)}"
        return RepairAction(orphan.queue, orphan.job_id, orphan.name, None, None,
                            f"left alone: {orphan.problem}; {inspect}")
    home = home_of(keys, job, orphan.fields, paused=paused, locked=orphan.locked,
                   pending_children=orphan.pending_children)
    return RepairAction(orphan.queue, orphan.job_id, job.name, job.timestamp or None, home.state, home.reason)


async def _put_back(client: aioredis.Redis, keys: QueueKeys, action: RepairAction) -> None:
    job_id = action.job_id
    async with client.pipeline(transaction=True) as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                await pipe.watch(keys.job(job_id), keys.meta)
                housed = [await pipe.zscore(k, job_id) for k in state_sets(keys)]
                housed += [await pipe.lpos(k, job_id) for k in state_lists(keys)]  # type: ignore[misc]
                # Our clients decode replies to str; redis-py 8's stubs type the hash as bytes | str.
                fields: dict[str, str] = await pipe.hgetall(keys.job(job_id))  # type: ignore[misc,assignment]
                if any(h is not None for h in housed) or not fields:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    action.reason = "left alone: no longer an orphan (moved or removed meanwhile)"
                    return
                try:
                    job = parse_job_hash(job_id, fields)
                except MalformedJob as exc:  # rewritten since the scan
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    action.reason = f"left alone: {exc}"
                    return
                paused = await is_paused(pipe, keys)
                locked = bool(await pipe.exists(keys.lock(job_id)))
                children = int(await pipe.scard(dependencies_key(keys, job_id)))  # type: ignore[misc]
                home = home_of(keys, job, fields, paused=paused, locked=locked, pending_children=children)
                counter = int(await pipe.incr(keys.pc)) if home.state == "prioritized" else 0
                pipe.multi()  # type: ignore[no-untyped-call]
                queue_home(pipe, keys, job_id, home, paused=paused, priority_counter=counter)
                await pipe.execute()
            except WatchError:
                continue
            action.state, action.reason, action.done = home.state, home.reason, True
            return
    action.reason = f"left alone: its hash or the queue's meta kept changing ({WATCH_ATTEMPTS} attempts); run again"


@asynccontextmanager
async def _locks(client: aioredis.Redis, prefix: str, queues: list[str]) -> AsyncIterator[Any]:
    """Hold the repair lock of every queue in `queues`; yields a coroutine function that renews them."""
    token = secrets.token_hex(8)
    held: list[str] = []
    try:
        for queue in dict.fromkeys(queues):
            key = repair_lock_key(prefix, queue)
            if not await client.set(key, token, nx=True, px=LOCK_TTL_MS):
                ttl = await client.pttl(key)
                raise RepairLocked(
                    f"another `twenty-jobs repair --apply` is running on queue '{queue}' (lock {key}, "
                    f"{max(ttl, 0) / 1000:.0f} s left); wait for it to finish"
                )
            held.append(key)

        async def renew() -> None:
            for key in held:
                await client.pexpire(key, LOCK_TTL_MS)

        yield renew
    finally:
        for key in held:
            await _release(client, key, token)


async def _release(client: aioredis.Redis, key: str, token: str) -> None:
    """Delete the lock only if it is still ours (it may have expired and been taken over)."""
    async with client.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            value = await pipe.get(key)  # type: ignore[misc]
            if (value.decode() if isinstance(value, bytes) else value) == token:
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(key)
                await pipe.execute()
        except WatchError:
            pass
