"""Python workers for the interop tests: in-process (`PythonWorker`) and as a real
`twenty-jobs work` process (`PythonWorkerProcess`, for SIGKILL scenarios).

Handlers record every attempt they start, with the same fields the Node fixture's worker writes
(id, name, data, dataJson, opts, attemptsMade, startedAt, timestamp, delay, priority, pid), so a
test can compare both sides field by field.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.registry import Registry, job
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig
from twenty_jobs.wire.keys import twenty_jobs_client_name

REPO_ROOT = Path(__file__).resolve().parent.parent

Action = Callable[[Any, JobContext], Awaitable[Any]]


def compact_json(value: Any) -> str:
    """What JSON.stringify writes for values that have no JS-specific formatting (no floats
    that print differently, no integer-like keys out of order)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def record_of(data: Any, ctx: JobContext) -> dict[str, Any]:
    opts = ctx.opts
    return {
        "id": ctx.job_id,
        "name": ctx.name,
        "data": data,
        "dataJson": compact_json(data),
        "opts": opts,
        "attemptsMade": ctx.attempts_made,
        "queue": ctx.queue,
        "pid": os.getpid(),
        "startedAt": time.time() * 1000,
        "timestamp": ctx.timestamp,
        "delay": opts.get("delay", 0),  # Node's record has the hash field (0 once promoted)
        "priority": opts.get("priority", 0),
    }


class Recorder:
    """Collects one record per started attempt (in-process workers)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.records) < count:
            if loop.time() > deadline:
                raise AssertionError(f"python worker recorded {len(self.records)} of {count} jobs in {timeout} s")
            await asyncio.sleep(0.01)
        return self.records


def recording_handler(
    recorder: Recorder,
    *,
    fail_times: int = 0,
    fail_message: str = "python failure",
    sleep_ms: int = 0,
    return_value: Any = None,
    action: Action | None = None,
) -> Callable[[Any, JobContext], Awaitable[Any]]:
    """A handler that records the attempt, then optionally sleeps, runs `action`, fails the first
    `fail_times` attempts with ValueError(fail_message), and returns `return_value`."""

    async def handler(data: Any, ctx: JobContext) -> Any:
        recorder.records.append(record_of(data, ctx))
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        result = await action(data, ctx) if action is not None else None
        if ctx.attempts_made < fail_times:
            raise ValueError(fail_message)
        return return_value if return_value is not None else result

    return handler


async def client_names(redis_url: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        clients: list[dict[str, Any]] = await client.client_list()
    finally:
        await client.aclose()
    return [str(c.get("name", "")) for c in clients]


async def wait_for_client_name(redis_url: str, name: str, count: int = 1, timeout: float = 15.0) -> None:
    """Until `count` connections carry CLIENT SETNAME `name` (a worker's blocking connection)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await client_names(redis_url)).count(name) < count:
        if loop.time() > deadline:
            raise AssertionError(f"no {count} connection(s) named {name!r} within {timeout} s")
        await asyncio.sleep(0.05)


class PythonWorker:
    """A twenty-jobs TwentyWorker running in this event loop.

        async with PythonWorker(redis_url, prefix, "webhook-queue", {"CallWebhookJob": handler}) as w:
            ...
    """

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        queue: str,
        handlers: dict[str, Callable[..., Awaitable[Any]]],
        **config: Any,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.queue = queue
        self.registry = Registry()
        for name, func in handlers.items():
            job(queue=queue, name=name, registry=self.registry)(func)
        config.setdefault("install_signal_handlers", False)
        config.setdefault("grace_s", 10)
        self.config = WorkerConfig(queues=[queue], redis_url=redis_url, prefix=prefix, **config)
        self.worker = TwentyWorker(self.config, self.registry)
        self.task: asyncio.Task[int] | None = None

    async def start(self) -> PythonWorker:
        before = (await client_names(self.redis_url)).count(self.client_name)
        self.task = asyncio.ensure_future(self.worker.run())
        started = asyncio.ensure_future(self.worker.started.wait())
        done, _ = await asyncio.wait([started, self.task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            started.cancel()
            raise AssertionError(f"python worker exited during start: {self.task.result()!r}")
        if started not in done:
            raise AssertionError("python worker did not start within 15 s")
        # Ready = its blocking connection (named like Node's) is connected.
        await wait_for_client_name(self.redis_url, self.client_name, before + 1)
        return self

    @property
    def client_name(self) -> str:
        return twenty_jobs_client_name(self.prefix, self.queue)

    async def stop(self) -> int:
        assert self.task is not None
        if not self.task.done():
            self.worker.request_stop()
        return await asyncio.wait_for(self.task, 30)

    async def __aenter__(self) -> PythonWorker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            await self.stop()


# -- the CLI worker process ----------------------------------------------------------------------

class PythonWorkerProcess:
    """`python -m twenty_jobs.cli work` with the handlers of interop_tests/cli_handlers.py.

    The handlers record each attempt as a JSON line in `out` and sleep `sleep_ms` first, so a test
    can SIGKILL the process while a job is active.
    """

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        queue: str,
        names: list[str],
        *,
        sleep_ms: int = 0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.queue = queue
        self.names = names
        self.sleep_ms = sleep_ms
        self.extra_args = extra_args or []
        fd, name = tempfile.mkstemp(prefix="tj-py-worker-", suffix=".jsonl")
        os.close(fd)
        self.out = Path(name)
        fd, name = tempfile.mkstemp(prefix="tj-py-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> PythonWorkerProcess:
        before = (await client_names(self.redis_url)).count(twenty_jobs_client_name(self.prefix, self.queue))
        self.proc = self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (await client_names(self.redis_url)).count(twenty_jobs_client_name(self.prefix, self.queue)) <= before:
            if self.proc.poll() is not None:
                raise AssertionError(f"python worker process exited {self.proc.returncode}: {self.log}")
            if loop.time() > deadline:
                raise AssertionError(f"python worker process not ready within 20 s: {self.log}")
            await asyncio.sleep(0.05)
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            TJ_INTEROP_QUEUE=self.queue,
            TJ_INTEROP_NAMES=",".join(self.names),
            TJ_INTEROP_OUT=str(self.out),
            TJ_INTEROP_SLEEP_MS=str(self.sleep_ms),
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        args = [
            sys.executable, "-m", "twenty_jobs.cli", "work",
            "--queue", self.queue, "--import", "interop_tests.cli_handlers", "--no-builtin-jobs",
            "--redis-url", self.redis_url, "--prefix", self.prefix, "--no-uvloop",
            *self.extra_args,
        ]
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        lines = self.out.read_text(encoding="utf-8").split("\n")[:-1] if self.out.exists() else []
        return [json.loads(line) for line in lines if line]

    async def wait_for_records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records := self.records()) < count:
            if loop.time() > deadline:
                raise AssertionError(f"python worker process recorded {len(records)} of {count}: {self.log}")
            await asyncio.sleep(0.02)
        return records

    def kill(self) -> None:
        """SIGKILL this process (by pid): no drain, no lock release."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"python worker process did not stop within {timeout} s: {self.log}") from None

    def remove_files(self) -> None:
        self.out.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)

    async def __aenter__(self) -> PythonWorkerProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            await self.stop()
        self.remove_files()
