"""What every scenario shares: the Redis under test, per-run key prefixes, the producers, and how
each implementation's worker process is started.

Implementations (the rows of the tables):

    node        a Node bullmq worker configured like Twenty's (node_fixture/bin/bench-worker.js)
    py-default  exactly what users run: `twenty-jobs work --import benchmarks.handlers --queue Q
                --concurrency C`, default logging (INFO, text), stdout and stderr to a log file
    py          benchmarks/py_worker.py: run_worker(WorkerConfig(...)) in process, logging at WARNING
    py-info     the same at INFO (the CLI's default level)
    py-asyncio  `py` on the standard asyncio loop instead of uvloop (opt-in)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from benchmarks.processes import WorkerProcess
from benchmarks.progress import UnfinishedJobs
from benchmarks.redis_server import blocked_clients, delete_pattern
from twenty_jobs.wire.keys import QueueKeys

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "node_fixture"
NODE_WORKER = NODE_DIR / "bin" / "bench-worker.js"
NODE_PREFILL = NODE_DIR / "bin" / "bench-prefill.js"
TWENTY_JOBS = Path(sys.executable).parent / "twenty-jobs"
# A Node worker given this many jobs never reaches its own `done`: it serves until SIGTERM, like
# the Python workers, so every implementation is stopped the same way after the measured window.
UNTIL_STOPPED = 1_000_000_000


@dataclass(frozen=True)
class Impl:
    name: str
    side: str  # "node" or "py"
    log_level: str = "WARNING"
    loop: str = "uvloop"
    cli: bool = False  # run as `twenty-jobs work` (the user's configuration)


IMPLS: dict[str, Impl] = {
    "node": Impl("node", "node"),
    "py-default": Impl("py-default", "py", log_level="INFO", cli=True),
    "py": Impl("py", "py"),
    "py-info": Impl("py-info", "py", log_level="INFO"),
    "py-asyncio": Impl("py-asyncio", "py", loop="asyncio"),
}


class Harness:
    def __init__(self, redis_url: str, workdir: Path, queue: str, node_bullmq: str) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.queue = queue
        self.node_bullmq = node_bullmq
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.run_id = f"{datetime.now().strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._has_processes_flag: bool | None = None

    # -- names and environments --

    def prefix(self, name: str) -> str:
        return f"tjbench-{self.run_id}-{name}"

    def node_env(self, prefix: str) -> dict[str, str]:
        return {**os.environ, "REDIS_URL": self.redis_url, "TJ_PREFIX": prefix,
                "TWENTY_JOBS_NODE_BULLMQ": self.node_bullmq}

    def py_env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "TJ_BENCH_QUEUE": self.queue, **extra}
        # The worker reads Twenty's settings from the environment: none of the caller's may leak in.
        for name in ("REDIS_URL", "REDIS_QUEUE_URL", "TWENTY_JOBS_PREFIX", "WORKER_ENABLED_QUEUES",
                     "WORKER_EXCLUDED_QUEUES", "OUTBOUND_HTTP_SAFE_MODE_ENABLED",
                     "OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", "WEBHOOK_TIMEOUT_MS", "WEBHOOK_RETRY_DELAY_MS"):
            if name not in extra:
                env.pop(name, None)
        return env

    def log_path(self, prefix: str, what: str = "worker") -> Path:
        return self.workdir / f"{prefix}.{what}.log"

    # -- producers --

    def node_prefill(self, prefix: str, jobs: int, name: str, rate: int | None = None) -> subprocess.Popen[bytes]:
        """Node bullmq adds N Twenty-shaped jobs with Twenty's options (bench-prefill.js)."""
        cmd = ["node", str(NODE_PREFILL), "--queue", self.queue, "--name", name, "--jobs", str(jobs)]
        if rate is not None:
            cmd += ["--rate", str(rate)]
        return subprocess.Popen(cmd, env=self.node_env(prefix), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    @staticmethod
    def wait_prefill(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"bench-prefill failed ({proc.returncode}): {err.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(out)
        return result

    # -- queues --

    def unfinished(self, prefix: str, queue: str | None = None) -> UnfinishedJobs:
        """A bullmq queue's unfinished jobs: waiting, prioritized, active (a job leaves `active` when
        its completion or failure is written) and delayed (a retry waiting for its backoff); jobs
        added = the job-id counter (Twenty's jobs without an id of their own take the next one);
        docs/benchmarks.md, "BullMQ queues seen from Redis"."""
        keys = QueueKeys(prefix, queue or self.queue)
        return UnfinishedJobs([("llen", keys.wait), ("zcard", keys.prioritized), ("llen", keys.active),
                               ("zcard", keys.delayed)], added_key=keys.id)

    def failed_count(self, prefix: str, queue: str | None = None) -> int:
        return int(self.client.zcard(QueueKeys(prefix, queue or self.queue).failed))

    def cleanup(self, prefix: str) -> None:
        delete_pattern(self.client, f"{prefix}:*")

    # -- workers --

    def wait_until_idle(self, workers: Sequence[WorkerProcess], blocked_before: int, count: int = 1,
                        timeout: float = 60) -> None:
        """Until `count` more connections wait in BZPOPMIN than before the workers started: each
        bullmq worker process is connected, has found nothing to do, and blocks for a job."""
        deadline = time.monotonic() + timeout
        while blocked_clients(self.client, "bzpopmin") < blocked_before + count:
            dead = [w for w in workers if w.exited()]
            if dead or time.monotonic() > deadline:
                culprit = (dead or list(workers))[0]
                raise RuntimeError(f"{culprit.name} never went idle on BZPOPMIN{culprit.log_tail()}")
            time.sleep(0.05)

    def has_processes_flag(self) -> bool:
        """Whether this checkout's `twenty-jobs work` has `--processes N`."""
        if self._has_processes_flag is None:
            out = subprocess.run([str(TWENTY_JOBS), "work", "--help"], capture_output=True, text=True,
                                 env={**self.py_env(), "COLUMNS": "200"}, check=False).stdout
            self._has_processes_flag = "--processes" in out
        return self._has_processes_flag

    def cli_worker(self, prefix: str, concurrency: int, *, queue: str | None = None, processes: int = 1,
                   imports: tuple[str, ...] = ("benchmarks.handlers",), env: dict[str, str] | None = None,
                   what: str = "worker") -> WorkerProcess:
        """`twenty-jobs work` as users run it: default logging, stdout and stderr to a log file."""
        cmd = [str(TWENTY_JOBS), "work", "--queue", queue or self.queue, "--concurrency", str(concurrency),
               "--redis-url", self.redis_url, "--prefix", prefix]
        for module in imports:
            cmd += ["--import", module]
        if processes > 1:
            cmd += ["--processes", str(processes)]
        return WorkerProcess(f"twenty-jobs work ({prefix})", cmd, self.py_env(**(env or {})), self.workdir,
                             self.log_path(prefix, what), json_lines=False)

    def start(self, impl: Impl, prefix: str, concurrency: int, *, latency_jobs: int | None = None,
              cpu_ms: float | None = None) -> WorkerProcess:
        """Start one worker of `impl` on the bench queue. With `latency_jobs`, the worker records each
        job's start latency (Node exits by itself after that many jobs and reports them); with
        `cpu_ms`, each job spends that much CPU (BenchCpuJob; the CLI only)."""
        if impl.side == "node":
            cmd = ["node", str(NODE_WORKER), "--queue", self.queue, "--concurrency", str(concurrency)]
            if latency_jobs is None:
                cmd += ["--jobs", str(UNTIL_STOPPED)]
            else:
                cmd += ["--jobs", str(latency_jobs), "--mode", "latency"]
            if cpu_ms is not None:
                cmd += ["--cpu-ms", str(cpu_ms)]
            return WorkerProcess(f"node ({prefix})", cmd, self.node_env(prefix), REPO, self.log_path(prefix))
        if impl.cli:
            env: dict[str, str] = {}
            if latency_jobs is not None:
                env["TJ_BENCH_LATENCY_FILE"] = str(self.log_path(prefix, "latency"))
            if cpu_ms is not None:
                env["TJ_BENCH_CPU_MS"] = str(cpu_ms)
            return self.cli_worker(prefix, concurrency, env=env)
        if cpu_ms is not None:
            raise ValueError(f"{impl.name} has no CPU-bound handler: use py-default")
        cmd = [sys.executable, "-m", "benchmarks.py_worker", "--redis-url", self.redis_url, "--prefix", prefix,
               "--queue", self.queue, "--concurrency", str(concurrency), "--log-level", impl.log_level,
               "--loop", impl.loop]
        if latency_jobs is not None:
            cmd.append("--latency")
        return WorkerProcess(f"{impl.name} ({prefix})", cmd, self.py_env(), self.workdir, self.log_path(prefix))

def check_exit(impl_side: str, worker: WorkerProcess, code: int) -> None:
    """Python workers exit 0 after SIGTERM; the Node bench worker has no SIGTERM handler (it is
    killed by the signal) or exits 0 by itself."""
    ok = code == 0 or (impl_side == "node" and code == -15)
    if not ok:
        raise RuntimeError(f"{worker.name} exited with {code}{worker.log_tail()}")
