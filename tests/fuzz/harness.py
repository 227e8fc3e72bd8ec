"""Plant fuzz batches, run a `--burst` worker over each, and judge every job against the property
of issue 9, item 1 (docs/fuzz.md):

* the worker exits by itself within a bound, and never logs a lost connection;
* every job ends in `completed` or `failed` (and in no other list), on its first fetch: at most one
  `active` event after planting, exactly one `completed`/`failed` event, no `stalled` event unless
  the job was planted stalled;
* a completed job ran its handler exactly once; a job whose kind must fail did not run it;
* a failed job's reason names the job and the field.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import redis.asyncio as aioredis

from tests.fuzz.cases import SCHEDULE, WITNESS_BASE, Case, Expect, JobSpec, generate_case, is_good, witness
from tests.fuzz.node_writes import STALLED, job_key, plant
from twenty_jobs.wire.keys import QueueKeys

REPO = Path(__file__).resolve().parents[2]
# A batch's worker must have exited after this long (seconds) from its start, however slow the
# machine; a correct worker needs one or two.
BOUND_BASE_S = 30.0
BOUND_PER_JOB_S = 0.1
# ... and within this long after the last event in its queue: a burst worker stops 0.2 s after
# its queues are empty, and a job takes milliseconds, so a worker that is still running with no
# progress for this long is stuck (jobs wedged in `active`, or a burst monitor that died).
IDLE_LIMIT_S = 5.0
# A job writes at most ~6 events in a correct run (added, waiting, stalled, waiting, active,
# completed), and a batch a few more (`drained`); far more means a job is fetched in a loop.
RUNAWAY_EVENTS_PER_JOB = 12
RUNAWAY_EVENTS_PER_BATCH = 50
POLL_S = 0.25
TERMINAL_EVENTS = (b"completed", b"failed")
# Lists and sorted sets a job may be found in, besides the two final ones.
PENDING_LISTS = ("wait", "active", "paused")
PENDING_ZSETS = ("prioritized", "delayed", "waiting-children")


@dataclass(slots=True)
class Problem:
    category: str  # short, for the per-kind summary ("left in active", "reason lacks field", ...)
    detail: str


@dataclass(slots=True)
class JobOutcome:
    case: Case
    spec: JobSpec
    state: str
    fetches: int
    stalls: int
    terminal: list[str]
    handler_calls: int
    reason: str | None
    problems: list[Problem] = field(default_factory=list)

    def describe(self) -> str:
        job_id = self.spec.planted.job_id.decode("utf-8", "backslashreplace")
        issues = "; ".join(f"{p.category}: {p.detail}" if p.detail else p.category for p in self.problems)
        return f"{self.case.label} job {job_id[:60]!r} expected {self.spec.expect.value}, got {self.state}: {issues}"


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Which cases go into one batch (one queue, one worker process)."""

    label: str  # the bad kind it isolates, "good", or "mixed-<n>"
    indexes: tuple[int, ...]
    witnesses: int = 0  # good jobs added to watch for disturbance


def plan_by_kind(indexes: Sequence[int], witnesses: int) -> list[BatchPlan]:
    """One batch per bad kind (its cases plus good witnesses), one for all good kinds: a failure
    is the fault of that batch's kind alone."""
    grouped: dict[str, list[int]] = collections.defaultdict(list)
    for index in indexes:
        name = SCHEDULE[index % len(SCHEDULE)]
        grouped["good" if is_good(name) else name].append(index)
    return [BatchPlan(label, tuple(members), 0 if label == "good" else witnesses)
            for label, members in grouped.items()]


def plan_mixed(indexes: Sequence[int], batch_size: int) -> list[BatchPlan]:
    """Consecutive cases together: every kind beside every other, as in a real queue."""
    return [BatchPlan(f"mixed-{n}", tuple(indexes[i : i + batch_size]))
            for n, i in enumerate(range(0, len(indexes), batch_size))]


@dataclass(slots=True)
class BatchRun:
    label: str
    queue: str
    cases: list[Case]
    bound_s: float
    exit_code: int | None  # None: stopped by the test (see `stop_reason`)
    stop_reason: str
    seconds: float
    log: str
    outcomes: list[JobOutcome]

    @property
    def exited(self) -> bool:
        return self.exit_code == 0

    def exit_problem(self) -> str | None:
        if self.exit_code == 0:
            return None
        if self.exit_code is None:
            return f"batch {self.label}: the burst worker {self.stop_reason}"
        return f"batch {self.label}: the burst worker exited with {self.exit_code} after {self.seconds:.1f} s"

    def connection_lost_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if "connection lost" in line.lower()]

    def error_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.startswith(("ERROR", "CRITICAL", "Traceback"))]


@dataclass(slots=True)
class FuzzRun:
    seed: int
    count: int
    layout: str
    batches: list[BatchRun]

    def batch(self, label: str) -> BatchRun | None:
        return next((b for b in self.batches if b.label == label), None)

    @property
    def outcomes(self) -> list[JobOutcome]:
        return [o for b in self.batches for o in b.outcomes]

    def by_kind(self) -> dict[str, list[JobOutcome]]:
        grouped: dict[str, list[JobOutcome]] = collections.defaultdict(list)
        for outcome in self.outcomes:
            grouped["witness" if outcome.case.index >= WITNESS_BASE else outcome.case.kind].append(outcome)
        return grouped

    def replay_hint(self, outcomes: Iterable[JobOutcome] = ()) -> str:
        indexes = sorted({o.case.index for o in outcomes})
        only = f" FUZZ_ONLY={','.join(map(str, indexes[:20]))}" if indexes else ""
        return (f"replay: make fuzz FUZZ_SEED={self.seed} FUZZ_CASES={self.count} FUZZ_LAYOUT={self.layout}"
                f"{f' (or those cases alone:{only})' if only else ''}")

    def summary(self) -> str:
        lines = [f"fuzz seed {self.seed}, layout {self.layout}: {len(self.outcomes)} jobs in "
                 f"{sum(len(b.cases) for b in self.batches)} cases (good witnesses included), "
                 f"{len(self.batches)} batches"]
        for batch in self.batches:
            exited = (f"exit {batch.exit_code} after {batch.seconds:.1f} s" if batch.exit_code is not None
                      else f"NOT exited after {batch.seconds:.1f} s: {batch.stop_reason}")
            lines.append(f"  batch {batch.label:36} {len(batch.cases):3} cases, {exited}, "
                         f"{len(batch.connection_lost_lines())} 'connection lost', "
                         f"{len(batch.error_lines())} error lines")
            if batch.exit_code != 0 or batch.error_lines():
                lines.extend(f"    | {line[:300]}" for line in batch.error_lines()[:5])
        lines.append(f"  {'kind':38} {'cases':>5} {'done':>5} {'fail':>5} {'other':>5} {'bad':>4}  problems")
        for kind, outcomes in sorted(self.by_kind().items()):
            states = collections.Counter(o.state for o in outcomes)
            other = len(outcomes) - states["completed"] - states["failed"]
            bad = sum(1 for o in outcomes if o.problems)
            problems = collections.Counter(p.category for o in outcomes for p in o.problems)
            lines.append(f"  {kind:38} {len({o.case.index for o in outcomes}):5} {states['completed']:5} "
                         f"{states['failed']:5} {other:5} {bad:4}  "
                         + ", ".join(f"{c} x{n}" for c, n in problems.most_common()))
        totals = collections.Counter(o.state for o in self.outcomes)
        lines.append("  states: " + ", ".join(f"{s} {n}" for s, n in totals.most_common()))
        return "\n".join(lines)


# -- running ----------------------------------------------------------------------------------------


async def run_fuzz(
    *, seed: int, count: int, layout: str, plans: Sequence[BatchPlan], redis_url: str, parallel: int = 6,
) -> FuzzRun:
    """Generate the cases, run each batch (its own queue and worker process), judge every job."""
    prefix = f"tj-fuzz-{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(redis_url)
    gate = asyncio.Semaphore(parallel)
    try:
        async def one(number: int, plan: BatchPlan) -> BatchRun:
            async with gate:
                queue = f"fuzz-{number}"
                queue_key = f"{prefix}:{queue}"
                now_ms = int(time.time() * 1000)
                cases = [generate_case(seed, i, now_ms, queue_key) for i in plan.indexes]
                cases += [witness(seed, number * plan.witnesses + w, now_ms, queue_key) for w in range(plan.witnesses)]
                return await run_batch(client, redis_url, prefix, queue, plan.label, cases)

        batches = await asyncio.gather(*(one(n, plan) for n, plan in enumerate(plans)))
    finally:
        await _delete_prefix(client, prefix)
        await client.aclose()
    return FuzzRun(seed=seed, count=count, layout=layout, batches=list(batches))


async def run_batch(
    client: aioredis.Redis, redis_url: str, prefix: str, queue: str, label: str, cases: list[Case]
) -> BatchRun:
    keys = QueueKeys(prefix, queue)
    specs = [(case, spec) for case in cases for spec in case.jobs]
    await plant(client, keys, (spec.planted for _, spec in specs))
    last = await client.xrevrange(keys.events, count=1)
    start_id = last[0][0] if last else b"0-0"
    bound_s = BOUND_BASE_S + BOUND_PER_JOB_S * len(specs)
    with tempfile.TemporaryDirectory(prefix="tj-fuzz-") as tmp:
        handled_path, log_path = Path(tmp, "handled.jsonl"), Path(tmp, "worker.log")
        started = time.monotonic()
        argv = [sys.executable, "-m", "tests.fuzz.worker_process", "--redis-url", redis_url, "--prefix", prefix,
                "--queue", queue, "--handled", str(handled_path)]
        exit_code, stop_reason = await _run_worker(
            client, keys, RUNAWAY_EVENTS_PER_BATCH + RUNAWAY_EVENTS_PER_JOB * len(specs), argv, log_path, bound_s
        )
        seconds = time.monotonic() - started
        log, handled = _read_results(log_path, handled_path)
    events = await _events_since(client, keys, start_id)
    outcomes = [await _judge(client, keys, case, spec, events.get(spec.planted.job_id, []), handled)
                for case, spec in specs]
    return BatchRun(label, queue, cases, bound_s, exit_code, stop_reason, seconds, log, outcomes)


async def _run_worker(
    client: aioredis.Redis, keys: QueueKeys, max_events: int, argv: list[str], log_path: Path, bound_s: float
) -> tuple[int | None, str]:
    """Run the worker process until it exits, or until it is judged stuck: no new event for
    IDLE_LIMIT_S after its first one, more than `max_events` events (a job fetched in a loop), or
    still running at `bound_s`. A stuck worker is killed (the verdict is already in); returns
    (exit code or None, why it was stopped)."""
    loop = asyncio.get_running_loop()
    events_before = await client.xlen(keys.events)
    with _log_file(log_path) as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        started = loop.time()
        last_count, last_progress = events_before, None
        while True:
            try:
                return await asyncio.wait_for(proc.wait(), POLL_S), ""
            except TimeoutError:
                pass
            now = loop.time()
            count = await client.xlen(keys.events)
            if count != last_count:
                last_count, last_progress = count, now
            if count - events_before > max_events:
                reason = f"wrote more than {max_events} events (a job fetched again and again)"
                break
            if last_progress is not None and now - last_progress > IDLE_LIMIT_S:
                reason = f"was still running {IDLE_LIMIT_S:.0f} s after its last event (stuck)"
                break
            if now - started > bound_s:
                reason = f"was still running after {bound_s:.0f} s"
                break
        proc.kill()
        await proc.wait()
        return None, reason


def _log_file(path: Path) -> BinaryIO:
    return open(path, "wb")  # the caller's `with` closes it


def _read_results(log_path: Path, handled_path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The worker's log, and one dict per handler call."""
    log = log_path.read_text(encoding="utf-8", errors="backslashreplace")
    if not handled_path.exists():
        return log, []
    lines = handled_path.read_text(encoding="utf-8").splitlines()
    return log, [json.loads(line) for line in lines if line.strip()]


Event = dict[bytes, bytes]


async def _events_since(client: aioredis.Redis, keys: QueueKeys, start_id: bytes) -> dict[bytes, list[Event]]:
    per_job: dict[bytes, list[Event]] = collections.defaultdict(list)
    cursor = b"(" + start_id
    while True:
        entries = await client.xrange(keys.events, min=cursor, count=1000)
        if not entries:
            return per_job
        for entry_id, entry in entries:
            job_id = entry.get(b"jobId")
            if job_id is not None:
                per_job[job_id].append(entry)
            cursor = b"(" + entry_id


async def _delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


# -- judging ----------------------------------------------------------------------------------------


async def _judge(
    client: aioredis.Redis, keys: QueueKeys, case: Case, spec: JobSpec, events: list[dict[bytes, bytes]],
    handled: list[dict[str, Any]],
) -> JobOutcome:
    job_id = spec.planted.job_id
    key = job_key(keys, job_id)
    pipe = client.pipeline(transaction=False)
    pipe.exists(key)
    pipe.hget(key, "failedReason")
    for name in PENDING_LISTS:
        pipe.lpos(getattr(keys, name), job_id)
    for name in (*PENDING_ZSETS, "completed", "failed"):
        pipe.zscore(keys.state(name), job_id)
    exists, stored_reason, *found = await pipe.execute()
    places = [name for name, hit in zip((*PENDING_LISTS, *PENDING_ZSETS, "completed", "failed"), found, strict=True)
              if hit is not None]
    kinds = [e.get(b"event", b"") for e in events]
    terminal = [k.decode() for k in kinds if k in TERMINAL_EVENTS]
    fetches = kinds.count(b"active")
    stalls = kinds.count(b"stalled")
    event_reason = next((e.get(b"failedReason") for e in events if e.get(b"event") == b"failed"), None)
    raw_reason = stored_reason if stored_reason is not None else event_reason
    reason = raw_reason.decode("utf-8", "backslashreplace") if raw_reason is not None else None
    calls = _handler_calls(spec, handled)

    if exists and len(places) == 1 and places[0] in ("completed", "failed"):
        state = places[0]
    elif not exists and not places and terminal == ["completed"] and spec.removed_on_complete:
        state = "completed"  # removed as its own removeOnComplete asks
    elif not exists:
        state = f"deleted (in {', '.join(places)})" if places else "deleted"
    elif not places:
        state = "in no list"
    else:
        state = "left in " + " and ".join(places)
    outcome = JobOutcome(case, spec, state, fetches, stalls, terminal, calls, reason)
    outcome.problems = _problems(outcome)
    return outcome


def _handler_calls(spec: JobSpec, handled: list[dict[str, Any]]) -> int:
    if spec.token is not None:
        return sum(1 for call in handled if call.get("token") == spec.token)
    ids = {spec.planted.job_id.decode("utf-8", errors) for errors in ("surrogateescape", "replace", "backslashreplace")}
    return sum(1 for call in handled if call.get("job_id") in ids)


def _problems(o: JobOutcome) -> list[Problem]:
    spec = o.spec
    found: list[Problem] = []
    if o.state not in ("completed", "failed"):
        found.append(Problem(o.state, ""))
    elif spec.expect is Expect.COMPLETE and o.state != "completed":
        found.append(Problem("failed (expected completed)", o.reason or ""))
    elif spec.expect is Expect.FAIL and o.state != "failed":
        found.append(Problem("completed (expected failed)", ""))
    if len(o.terminal) != 1:
        found.append(Problem(f"{len(o.terminal)} final events", ",".join(o.terminal)))
    if o.fetches > 1:
        found.append(Problem("fetched more than once", f"{o.fetches} fetches"))
    if o.stalls > (1 if spec.planted.place == STALLED else 0):
        found.append(Problem("stalled", f"{o.stalls} stall events"))
    if o.state == "completed" and o.handler_calls != 1:
        found.append(Problem("handler calls", f"completed after {o.handler_calls} handler calls"))
    if o.state == "failed":
        if spec.expect is Expect.FAIL and o.handler_calls:
            found.append(Problem("handler ran on bad data", f"{o.handler_calls} calls"))
        found += _reason_problems(spec, o.reason)
    return found


def _reason_problems(spec: JobSpec, reason: str | None) -> list[Problem]:
    if not reason:
        return [Problem("failed without a reason", "")]
    found: list[Problem] = []
    if not any(word in reason for word in spec.job_words):
        found.append(Problem("reason lacks the job", reason[:160]))
    lowered = reason.lower()
    if spec.field_words and not any(word.lower() in lowered for word in spec.field_words):
        found.append(Problem("reason lacks the field", f"{spec.field}: {reason[:160]}"))
    return found
