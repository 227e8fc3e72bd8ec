"""The handlers `make bench` loads into the CLI: `twenty-jobs work --import benchmarks.handlers`.

    BenchNoopJob  does nothing (the drain, latency, memory and peers scenarios)
    BenchCpuJob   spends TJ_BENCH_CPU_MS (default 2) milliseconds of CPU in a busy loop (cpu)

Both are registered on the queue named by TJ_BENCH_QUEUE (default webhook-queue). With
TJ_BENCH_LATENCY_FILE set, BenchNoopJob appends one line per job to that file: its start latency
in ms (now - data.ts, the producer's epoch-ms timestamp), for the idle-pickup latency probe.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import IO, Any

import twenty_jobs
from benchmarks.job_names import CPU_JOB, NOOP_JOB

QUEUE = os.environ.get("TJ_BENCH_QUEUE", "webhook-queue")
CPU_MS = float(os.environ.get("TJ_BENCH_CPU_MS", "2"))


def _latency_output() -> IO[str] | None:
    path = os.environ.get("TJ_BENCH_LATENCY_FILE")
    if not path:
        return None
    out = open(path, "a", buffering=1)  # line-buffered: every latency reaches the file
    atexit.register(out.close)
    return out


_latencies = _latency_output()


@twenty_jobs.job(queue=QUEUE, name=NOOP_JOB)
async def noop(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
    if _latencies is not None:
        _latencies.write(f"{time.time() * 1000 - data['ts']:.3f}\n")


def spin(cpu_ms: float) -> None:
    """Busy-loop until this thread has used `cpu_ms` of CPU (not wall time: a preempted loop
    still burns the full amount)."""
    until = time.thread_time() + cpu_ms / 1000
    while time.thread_time() < until:
        pass


@twenty_jobs.job(queue=QUEUE, name=CPU_JOB)
async def burn_cpu(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> None:
    spin(CPU_MS)
