"""`cpu`: CPU-bound handlers. Each job spends 2 ms of CPU in a busy loop (BenchCpuJob in
benchmarks/handlers.py; `--cpu-ms` of node_fixture/bin/bench-worker.js). One Node process, as
Twenty runs it, against `twenty-jobs work` with 1 and with 2 processes.

Two Python processes are `twenty-jobs work --processes 2` when this checkout's CLI has the flag;
otherwise two separate `twenty-jobs work` processes on the same queue, which is the same for
throughput (the output says which). Worker CPU is the whole process tree's.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.harness import IMPLS, Harness, check_exit
from benchmarks.job_names import CPU_JOB
from benchmarks.processes import WorkerProcess
from benchmarks.progress import watch
from benchmarks.redis_server import blocked_clients
from benchmarks.report import Column, format_table, summarize
from benchmarks.result import Result, say

COLUMNS = [
    Column("jobs/s", "throughput"),
    Column("wCPU ms/job", "worker_cpu_ms_per_job", 2),
    Column("overhead ms/job", "overhead_ms_per_job", 2),
]
GROUP = "2 ms CPU"


def start_python(h: Harness, prefix: str, concurrency: int, processes: int, cpu_ms: float) -> list[WorkerProcess]:
    env = {"TJ_BENCH_CPU_MS": str(cpu_ms)}
    if processes == 1 or h.has_processes_flag():
        return [h.cli_worker(prefix, concurrency, processes=processes, env=env)]
    return [h.cli_worker(prefix, concurrency, env=env, what=f"worker{i}") for i in range(processes)]


def cpu_run(h: Harness, impl: str, processes: int, concurrency: int, rep: int, jobs: int,
            cpu_ms: float) -> dict[str, Any]:
    prefix = h.prefix(f"cpu-{impl}-{processes}p-r{rep}")
    workers: list[WorkerProcess] = []
    try:
        # Every process must be serving before the jobs arrive, or the first one to start up takes
        # them all (the window opens at the first completion, so the arrival is not timed).
        blocked_before = blocked_clients(h.client, "bzpopmin")
        if impl == "node":
            workers = [h.start(IMPLS["node"], prefix, concurrency, cpu_ms=cpu_ms)]
        else:
            workers = start_python(h, prefix, concurrency, processes, cpu_ms)
        h.wait_until_idle(workers, blocked_before, count=processes)
        h.wait_prefill(h.node_prefill(prefix, jobs, CPU_JOB), timeout=60 + jobs / 500)
        window = watch(h.client, h.unfinished(prefix), jobs, workers)
        for w in workers:
            w.terminate()
        for w in workers:
            check_exit("node" if impl == "node" else "py", w, w.wait(30))
        per_job = window.cpu_ms_per(window.jobs)
        label = "node" if impl == "node" else ("py-default" if processes == 1 else f"py-default x{processes}")
        return {
            "impl": label, "group": GROUP, "rep": rep, "processes": processes, "concurrency": concurrency,
            "jobs": jobs, "throughput": window.throughput, "elapsed_s": window.elapsed_s,
            "worker_cpu_ms_per_job": per_job, "overhead_ms_per_job": per_job - cpu_ms,
            # Separate processes: each one's share shows that all of them worked.
            "cpu_s_by_process": window.cpu_s_by_worker,
            "failed": h.failed_count(prefix),
        }
    finally:
        for w in workers:
            w.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    how = ("twenty-jobs work --processes N" if h.has_processes_flag() else
           "N separate `twenty-jobs work` processes on the same queue (this CLI has no --processes)")
    say(f"cpu: {args.cpu_jobs:,} jobs of {args.cpu_ms:g} ms CPU each, c={args.cpu_concurrency}, Python N="
        f"{','.join(map(str, args.cpu_processes))} via {how}; Node: one process; {args.reps} rep(s)")
    cases = [("node", 1), *(("py", n) for n in args.cpu_processes)]
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for impl, n in cases if rep % 2 == 0 else list(reversed(cases)):
            r = cpu_run(h, impl, n, args.cpu_concurrency, rep, args.cpu_jobs, args.cpu_ms)
            runs.append(r)
            say(f"  rep {rep} {r['impl']:<14} {r['throughput']:>7,.0f} jobs/s  wCPU {r['worker_cpu_ms_per_job']:.2f} "
                f"ms/job (overhead {r['overhead_ms_per_job']:.2f})")
    summary = summarize(runs, [c.key for c in COLUMNS])
    title = (f"CPU-bound handlers ({args.cpu_ms:g} ms CPU per job, c={args.cpu_concurrency} per process), "
             f"medians of {args.reps} rep(s); Python N>1: {how}")
    table = format_table(title, summary, COLUMNS, "handler")
    failures = [f"{r['impl']} rep {r['rep']}: {r['failed']} failed job(s)" for r in runs if r["failed"]]
    return Result("cpu", table, summary, runs, notes=[f"Python N>1 ran as {how}"], failures=failures)
