"""The worker process: one QueueWorker per served queue (runtime/queue_worker.py), the lifecycle
hooks around them, signals, the bounded shutdown drain and `--burst`.

    from twenty_jobs.runtime.worker import WorkerConfig, run_worker
    exit_code = await run_worker(WorkerConfig(queues=["webhook-queue"], burst=True))

Each queue worker gets two connections: a command connection whose concurrent commands are
pipelined on one socket (connection/protocol.py), and a blocking one for BZPOPMIN, named
`<prefix>:<base64(queue)>:w:twenty-jobs` so Node's `getWorkers()` and Twenty's health page count
Python workers (docs/traps.md) and a twenty-jobs worker can tell them from Node's
(docs/shared-queues.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from twenty_jobs.connection.client import make_client, make_command_connection, ping_or_raise
from twenty_jobs.connection.protocol import CommandConnection
from twenty_jobs.errors import ConfigError, StartupError
from twenty_jobs.runtime.config import UnknownJobs, WorkerConfig, serve
from twenty_jobs.runtime.events import JobLogObserver, JobObserver, Observers
from twenty_jobs.runtime.hand_off import ConsumerWatch, warn_python_only_names
from twenty_jobs.runtime.hooks import run_shutdown_hooks
from twenty_jobs.runtime.lifecycle import WorkerContext, run_shutdown, run_startup
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.queue_worker import QueueWorker
from twenty_jobs.runtime.registry import Registry, default_registry
from twenty_jobs.wire.compat import check_queues
from twenty_jobs.wire.keys import QueueKeys, twenty_jobs_client_name
from twenty_jobs.wire.scripts.queue import count_pending_jobs

# JobObserver and WorkerConfig are defined elsewhere and offered here, with the worker itself.
__all__ = ["JobObserver", "TwentyWorker", "WorkerConfig", "WorkerService", "run_worker"]

log = logging.getLogger("twenty_jobs.runtime.worker")

# How often --burst looks at the queue counts.
BURST_POLL_S = 0.1
# After the grace period, how long the forced stop may take before connections are dropped.
FORCED_STOP_S = 5.0


class WorkerService(Protocol):
    """Something that runs beside the workers for the life of the process (heartbeat, metrics
    endpoint). Started after the queue workers exist, stopped after they have drained."""

    async def start(self, worker: TwentyWorker) -> None: ...

    async def stop(self) -> None: ...


def command_connection(redis_url: str, what: str) -> CommandConnection:
    """A queue worker's command connection (one socket, concurrent commands pipelined)."""
    return make_command_connection(redis_url, what=what)


class TwentyWorker:
    """Runs one QueueWorker per served queue until stopped (signal, burst, or `request_stop()`)."""

    def __init__(self, config: WorkerConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry
        self.workers: list[QueueWorker] = []
        self.producer: Producer | None = None
        self.context: WorkerContext | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.exit_code = 0
        self.started = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._signals = 0
        self._client: aioredis.Redis | None = None
        self._connections: list[CommandConnection | aioredis.Redis] = []
        self._started_up = False
        self._job_log: JobLogObserver | None = None

    def _check_queues(self) -> None:
        for name in self.config.queues:
            # Refuses unknown names when custom queues are not allowed.
            serve(self.config, name, self.registry.queue_settings.get(name))
            if not self.registry.names(name):
                raise ConfigError(
                    f"queue '{name}' has no handlers in this process, so every job would fail; "
                    "load the module that declares them with --import, or leave the queue to Node"
                )
        if not self.config.queues:
            raise ConfigError(
                "no queue to serve: no handlers are registered for the selected queues "
                "(check --queue/--exclude-queue, WORKER_ENABLED_QUEUES/WORKER_EXCLUDED_QUEUES and --import)"
            )

    async def start(self) -> None:
        """Connect, warn about what the queues are shared with, run the startup hooks and build
        the queue workers (they start fetching in `run`)."""
        self._check_queues()
        config = self.config
        self._client = make_client(config.redis_url, what="worker control")
        await ping_or_raise(self._client, config.redis_url)
        # Know what we share keys with: Node bullmq < 6 and legacy repeatables (docs/mixed-versions.md).
        for found in await check_queues(self._client, config.prefix, config.queues):
            if found.warning:
                log.warning("%s", found.warning)
        self.producer = Producer(config.redis_url, prefix=config.prefix, allow_any_queue=True, registry=self.registry)
        self.context = WorkerContext(self.worker_id, config.redis_url, config.prefix, list(config.queues),
                                     self.producer)
        try:
            await run_startup([*self.registry.startup_hooks, *config.on_startup], self.context)
        except Exception as exc:
            raise StartupError(f"a worker startup hook failed: {type(exc).__name__}: {exc}") from exc
        self._started_up = True
        # Made after the startup hooks and the handler modules, which may have changed the log setup.
        self._job_log = JobLogObserver()
        observers = Observers([self._job_log, *config.observers])
        consumers = ConsumerWatch(self._client, config.prefix)
        await warn_python_only_names(consumers, {name: self.registry.names(name) for name in config.queues})
        leave = config.unknown_jobs is UnknownJobs.LEAVE
        for name in config.queues:
            served = serve(config, name, self.registry.queue_settings.get(name))
            conn = command_connection(config.redis_url, f"{name} commands")
            blocking = make_client(config.redis_url, what=f"{name} blocking wait", retry_forever=True,
                                   client_name=twenty_jobs_client_name(config.prefix, name))
            self._connections += [conn, blocking]
            self.workers.append(QueueWorker(
                served, self.registry.for_queue(name), prefix=config.prefix, conn=conn, blocking=blocking,
                observers=observers, producer=self.producer, context=self.context,
                consumers=consumers if leave else None,
            ))
        others = "; other jobs are left to the queue's other consumers" if leave else ""
        for worker in self.workers:
            limiter = worker.served.limiter
            limit = f", limit {limiter.max} per {limiter.duration_ms} ms" if limiter else ""
            log.info("serving %s (concurrency %d, lock %d ms%s) for jobs: %s%s", worker.name, worker.concurrency,
                     worker.served.lock_duration_ms, limit, ", ".join(worker.handlers), others)
        self.started.set()

    async def run(self) -> int:
        """Serve until stopped; returns the process exit code (0 after a clean drain)."""
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        loop = asyncio.get_running_loop()
        if self.config.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig)
        runs = [asyncio.ensure_future(w.run()) for w in self.workers]
        started_services: list[WorkerService] = []
        burst = asyncio.ensure_future(self._burst_monitor()) if self.config.burst else None
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            for service in self.config.services:
                await service.start(self)
                started_services.append(service)
            done, _ = await asyncio.wait([*runs, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    log.error("a queue worker stopped unexpectedly: %r", task.exception())
                    self.exit_code = 1
            await self._shutdown(runs)
        finally:
            stopper.cancel()
            if burst is not None:
                burst.cancel()
            # Cancelled from outside (an app's task, an interrupted asyncio.run): the queue workers
            # stop with this task, before their connections close under them.
            unfinished = [run for run in runs if not run.done()]
            for run in unfinished:
                run.cancel()
            if unfinished:
                await asyncio.wait(unfinished, timeout=FORCED_STOP_S)
            for service in reversed(started_services):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %r failed", service)
            if self.config.install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            try:
                await self.close()
            finally:
                # Every job line is written before run() returns or raises (a traceback comes after).
                if self._job_log is not None:
                    self._job_log.flush()
        return self.exit_code

    def request_stop(self, sig: int | None = None) -> None:
        """First call: stop fetching and drain within the grace period. Second: stop at once."""
        self._signals += 1
        if self._signals == 1:
            log.warning(
                "%s received: finishing active jobs (up to %.0f s; signal again to stop now)",
                signal.Signals(sig).name if sig else "stop", self.config.grace_s,
            )
            self._stop_requested.set()
        else:
            log.warning("second stop request: stopping now; active jobs are left to stall recovery")
            self._force.set()
            self._stop_requested.set()

    async def _shutdown(self, runs: Sequence[asyncio.Future[Any]]) -> None:
        graceful: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(w.close() for w in self.workers), return_exceptions=True)
        )
        forced: asyncio.Future[Any] = asyncio.ensure_future(self._force.wait())
        done, _ = await asyncio.wait([graceful, forced], timeout=self.config.grace_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if graceful not in done:
            active = sum(len(w.active) for w in self.workers)
            log.warning("stopping with %d job(s) still active: they stay in Redis and will be recovered "
                        "by the stall checker after their lock expires", active)
            self.exit_code = self.exit_code or 1
            for worker in self.workers:
                worker.force_close("worker shutdown deadline")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), FORCED_STOP_S)
            graceful.cancel()
        forced.cancel()
        for run in runs:
            if not run.done():
                run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def close(self) -> None:
        """After the last job: the shutdown hooks, then the connections (`run` calls it; call it
        yourself only after a `start` without `run`)."""
        if self._started_up and self.context is not None:
            await run_shutdown([*self.registry.shutdown_hooks, *self.config.on_shutdown], self.context)
        await run_shutdown_hooks()
        if self.producer is not None:
            await self.producer.close()
        for conn in self._connections:
            with contextlib.suppress(Exception):
                await conn.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def pending_jobs(self, queue: str) -> int:
        """Jobs that still have to run on `queue` (waiting, prioritized, active, and delayed jobs
        that are not future iterations of a job scheduler)."""
        assert self._client is not None
        return await count_pending_jobs(self._client, QueueKeys(self.config.prefix, queue))

    async def _burst_monitor(self) -> None:
        """--burst: stop once every served queue has had nothing left to run for two checks in a
        row. Survives Redis outages (logged once): after one, it goes on checking."""
        idle_checks = 0
        failing = False
        while not self._stop_requested.is_set():
            await asyncio.sleep(BURST_POLL_S)
            try:
                busy = sum([await self.pending_jobs(w.name) for w in self.workers])
                # Jobs left to another consumer are not this process's to wait for.
                busy -= sum(w.hand_off.parked() for w in self.workers if w.hand_off)
            except Exception as exc:  # an outage (RedisError, OSError) or worse: never die silently
                if not failing:
                    log.warning("burst: cannot read the queue counts (%s); retrying", exc,
                                exc_info=not isinstance(exc, RedisError | OSError))
                failing = True
                idle_checks = 0
                continue
            if failing:
                log.warning("burst: queue counts readable again")
                failing = False
            in_flight = sum(len(w.active) for w in self.workers)
            idle_checks = idle_checks + 1 if busy == 0 and in_flight == 0 else 0
            if idle_checks >= 2:
                log.info("burst: the served queues are empty; stopping")
                self._stop_requested.set()


async def run_worker(config: WorkerConfig, registry: Registry | None = None) -> int:
    """Run a worker until it is stopped; returns the exit code."""
    return await TwentyWorker(config, registry).run()
