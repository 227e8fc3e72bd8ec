"""Sharing a queue with another consumer: `--unknown-jobs leave` (docs/shared-queues.md).

Twenty's Node worker and a twenty-jobs worker can consume the same queue. A worker fetches
whatever is next, so the Python worker gets jobs it has no handler for (Twenty's push-subscription
jobs on webhook-queue, say). With `leave`, such a job — and one whose handler raised `HandOffJob`
(a webhook batch the port must not deliver itself) — goes back to the queue for the other
consumer:

* with moveToDelayed's "skip attempt" (the script Node's own `job.moveToDelayed` uses): `atm`
  (attemptsMade) is untouched, so Node runs it as its first attempt, with every retry it had;
  only `ats` (attempts started, informational) counts the fetch;
* parked in `delayed` for a short while, not pushed back to the head of the queue: Node's manual
  rate limit (moveJobFromActiveToWait) puts a job back at the head, which this worker would fetch
  again at once — a busy loop — and which would keep every job behind it from running here;
* while no other consumer is connected, the same script call takes this worker's next job (a
  sweep of the queue costs one call per job). While one is, the slot pauses instead (10 ms,
  doubling up to 1 s while it gets only jobs to leave): Node takes the jobs at the head meanwhile,
  and Python takes at most `concurrency` jobs per second it cannot run;
* when it is due, both consumers race for it (a fetch takes whatever is next). An idle Node worker
  finds it at the due time when it knows that time, else on its next poll (BullMQ's drainDelay,
  5 s); so an idle Python worker whose next delayed job is one it left looks at it only
  NODE_POLL_MARGIN_MS after it is due (new jobs still wake it at once). A busy Python worker may
  take it again: each time the same job sits out twice as long.

How long a job sits out depends on whether a consumer other than twenty-jobs is connected to the
queue (CLIENT LIST: Node's worker connections are named `<prefix>:<base64(queue)>`, ours
`<prefix>:<base64(queue)>:w:twenty-jobs`), and doubles each time this process leaves the same job:

* another consumer connected: 250 ms, 500 ms, ... up to 10 s (it takes the job when it is due,
  unless this worker fetches it first again);
* none connected: 30 s, 60 s, ... up to 5 min, and while such jobs wait the connections are
  looked at every second: when a consumer connects, the jobs are promoted (due at once). So jobs
  nobody here can run wait, neither failed nor fetched over and over, and run once Node starts.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from twenty_jobs.twenty.jobs import python_only_names
from twenty_jobs.wire.keys import is_twenty_jobs_client, is_worker_client
from twenty_jobs.wire.scripts.queue import promote

if TYPE_CHECKING:
    from twenty_jobs.connection.protocol import CommandConnection
    from twenty_jobs.wire.job import JobRecord
    from twenty_jobs.wire.scripts.worker import Fetch, WorkerScripts

log = logging.getLogger("twenty_jobs.runtime.hand_off")


# Sit-out delays (ms): first time, doubled per repeat, cap. See the module docstring.
SHARED_FIRST_MS = 250
SHARED_CAP_MS = 10_000
ALONE_FIRST_MS = 30_000
ALONE_CAP_MS = 300_000
# How long after a left job is due an idle Python worker looks at it: longer than Node's idle poll
# (BullMQ's default drainDelay, 5 s, which Twenty keeps), so an idle Node worker gets it first.
NODE_POLL_MARGIN_MS = 5_500
# How old a reading of the connected consumers may be, and how often it is renewed while jobs
# wait for a consumer to connect.
WATCH_INTERVAL_S = 1.0
# While sharing the queue, a slot that left a job pauses before its next fetch (doubling while it
# gets only jobs to leave), so the other consumer takes the jobs at the head of the queue meanwhile.
SLOT_PAUSE_FIRST_MS = 10
SLOT_PAUSE_CAP_MS = 1_000
# Jobs whose repeat count this process remembers (the oldest are forgotten: they start over).
REMEMBERED_JOBS = 10_000


def sit_out_ms(times_left_before: int, others_connected: bool) -> int:
    """How long a job sits out the `times_left_before + 1`-th time this process leaves it."""
    first, cap = (SHARED_FIRST_MS, SHARED_CAP_MS) if others_connected else (ALONE_FIRST_MS, ALONE_CAP_MS)
    return min(first << min(times_left_before, 20), cap)


def other_consumers(names: Iterable[str], prefix: str, queue: str) -> int:
    """Worker connections of `queue` that are not twenty-jobs workers (Twenty's Node workers)."""
    return sum(1 for n in names if is_worker_client(n, prefix, queue) and not is_twenty_jobs_client(n, prefix, queue))


class ConsumerWatch:
    """The connection names of the Redis (CLIENT LIST), read at most once per `max_age_s` for the
    whole process. None where CLIENT LIST is refused (some managed Redis services): then another
    consumer is assumed to be connected, since the user chose to share the queue."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, max_age_s: float = WATCH_INTERVAL_S) -> None:
        self.client = client
        self.prefix = prefix
        self.max_age_s = max_age_s
        self._names: list[str] | None = None
        self._read_at = -1e18
        self._lock = asyncio.Lock()
        self._refused_logged = False

    async def names(self) -> list[str] | None:
        async with self._lock:
            if time.monotonic() - self._read_at >= self.max_age_s:
                await self._read()
        return self._names

    async def _read(self) -> None:
        try:
            clients = await self.client.client_list()
        except ResponseError as exc:  # NOPERM, or a renamed command
            if not self._refused_logged:
                self._refused_logged = True
                log.warning("Redis refuses CLIENT LIST (%s): jobs left for another consumer sit out the short "
                            "delay as if Twenty's Node worker were connected", exc)
            self._names = None
        except (RedisError, OSError) as exc:
            # An outage: keep the last reading; the next call tries again.
            log.warning("cannot list the Redis connections to see who else consumes the queues: %s", exc)
            return
        else:
            self._names = [str(c.get("name") or "") for c in clients]
        self._read_at = time.monotonic()

    async def others(self, queue: str) -> int | None:
        """Consumers of `queue` other than twenty-jobs workers; None when unknown."""
        names = await self.names()
        return None if names is None else other_consumers(names, self.prefix, queue)


class HandOff:
    """Leaves one queue's jobs to its other consumers (`leave`), and promotes the jobs that wait
    for one as soon as one connects (`run`, beside the queue worker's slots)."""

    def __init__(self, queue: str, scripts: WorkerScripts, conn: CommandConnection, watch: ConsumerWatch) -> None:
        self.queue = queue
        self.scripts = scripts
        self.conn = conn
        self.watch = watch
        self._times_left: collections.OrderedDict[str, int] = collections.OrderedDict()
        # Jobs parked while no other consumer was connected: id -> when they are due (epoch ms).
        self._waiting: dict[str, int] = {}
        self._someone_waits = asyncio.Event()
        # The jobs this process parked, with when they are due (for --burst), and how many are due
        # at each time (to recognize them in a fetch reply's next delayed time).
        self._parked: dict[str, int] = {}
        self._due_times: collections.Counter[int] = collections.Counter()
        # Per slot (lock token): how many jobs in a row it left while sharing the queue.
        self._streaks: dict[str, int] = {}
        self._alone_announced = False
        self._names_announced: set[str] = set()

    def running(self, token: str) -> None:
        """The slot with `token` runs a job of its own: its next hand-off pauses it briefly again."""
        if self._streaks:
            self._streaks.pop(token, None)

    async def leave(self, job: JobRecord, token: str, *, fetch_next: bool) -> tuple[Fetch | None, float]:
        """Give `job` (active under `token`) back to the queue without using an attempt. Returns
        what the same call fetched for the slot (None: it fetched nothing, because not asked to
        or because another consumer should take the next jobs) and how long the slot should pause
        before fetching again (seconds; while sharing the queue)."""
        others = await self.watch.others(self.queue)
        shared = others is None or others > 0
        pause_s = 0.0
        if shared:
            # Let the other consumer take the next jobs: this slot fetches again after a pause that
            # doubles while it keeps getting only jobs to leave.
            fetch_next = False
            streak = self._streaks.get(token, 0)
            self._streaks[token] = streak + 1
            pause_s = min(SLOT_PAUSE_FIRST_MS << min(streak, 20), SLOT_PAUSE_CAP_MS) / 1000
        times = self._times_left.pop(job.id, 0)
        self._times_left[job.id] = times + 1
        if len(self._times_left) > REMEMBERED_JOBS:
            self._times_left.popitem(last=False)
        delay = sit_out_ms(times, shared)
        fetch, due = await self.scripts.hand_back(self.conn, job.id, token, delay_ms=delay, fetch_next=fetch_next)
        self._forget(job.id)
        self._parked[job.id] = due
        self._due_times[due] += 1
        if len(self._parked) > REMEMBERED_JOBS:
            self._forget(next(iter(self._parked)))
        self._announce(job.name, shared)
        if not shared:
            self._waiting[job.id] = due
            self._someone_waits.set()
        log.debug("queue %s: left job #%s (%s) to another consumer for %d ms", self.queue, job.id, job.name, delay)
        return (fetch if fetch_next else None), pause_s

    def _forget(self, job_id: str) -> None:
        due = self._parked.pop(job_id, None)
        if due is not None:
            self._due_times[due] -= 1
            if self._due_times[due] <= 0:
                del self._due_times[due]

    def wake_margin_ms(self, next_delayed_at: int) -> int:
        """How long after `next_delayed_at` an idle slot should fetch: NODE_POLL_MARGIN_MS when
        the job due then is one this process left (the other consumer's turn), else 0."""
        return NODE_POLL_MARGIN_MS if next_delayed_at in self._due_times else 0

    def _announce(self, name: str, shared: bool) -> None:
        if name not in self._names_announced:
            self._names_announced.add(name)
            log.info("queue %s: jobs named %s are left to the queue's other consumers (no handler here, or handed "
                     "off; --unknown-jobs leave)", self.queue, name)
        if not shared and not self._alone_announced:
            self._alone_announced = True
            log.warning("queue %s: no consumer other than twenty-jobs is connected; the jobs this worker leaves wait "
                        "in 'delayed' until one connects (Twenty's Node worker, without WORKER_EXCLUDED_QUEUES=%s)",
                        self.queue, self.queue)
        elif shared:
            self._alone_announced = False

    async def run(self) -> None:
        """While jobs wait for a consumer to connect: look every WATCH_INTERVAL_S; once one is
        connected, make those jobs due at once (promote) instead of at the end of their wait."""
        while True:
            await self._someone_waits.wait()
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.time() * 1000
            self._waiting = {job_id: due for job_id, due in self._waiting.items() if due > now}
            if not self._waiting:
                self._someone_waits.clear()
                continue
            try:
                others = await self.watch.others(self.queue)
                if others is not None and others > 0:
                    await self._promote_waiting(others)
            except Exception as exc:  # an outage, or worse: logged, and the loop goes on
                log.warning("queue %s: could not promote the jobs left for another consumer: %s", self.queue, exc,
                            exc_info=not isinstance(exc, RedisError | OSError))

    async def _promote_waiting(self, others: int) -> None:
        waiting, self._waiting = list(self._waiting), {}
        self._someone_waits.clear()
        promoted = 0
        for job_id in waiting:
            promoted += await promote(self.conn, self.scripts.keys, job_id)
            self._forget(job_id)
        log.info("queue %s: %d other consumer(s) connected; %d job(s) left for them are due now", self.queue,
                 others, promoted)

    def parked(self) -> int:
        """How many of the jobs this process left are not due yet, so still in `delayed` (`--burst`
        does not wait for them: they are another consumer's). Due ones are forgotten: they are
        back in the queue, for whoever fetches them."""
        now = time.time() * 1000
        for job_id in [job_id for job_id, due in self._parked.items() if due <= now]:
            self._forget(job_id)
        return len(self._parked)


async def warn_python_only_names(watch: ConsumerWatch, handlers: Mapping[str, Iterable[str]]) -> list[str]:
    """The reverse hazard: Twenty's Node worker completes, without running it, any job whose name
    it has no handler for. On a Twenty queue that another consumer also serves, a job name only
    Python handles may be taken by Node and silently completed. Logs one warning per such queue;
    returns the warnings."""
    lines: list[str] = []
    for queue, names in handlers.items():
        only_python = python_only_names(queue, names)
        others = await watch.others(queue) if only_python else 0
        if only_python and others:
            lines.append(
                f"queue {queue}: {others} consumer(s) other than twenty-jobs (Twenty's Node worker?) also serve "
                f"it, and Twenty's worker completes jobs it has no handler for without running them: jobs named "
                f"{', '.join(only_python)} (handled only here) may be lost that way. Run them on a queue of "
                f"their own, or keep Node off this queue (WORKER_EXCLUDED_QUEUES={queue})"
            )
    for line in lines:
        log.warning("%s", line)
    return lines
