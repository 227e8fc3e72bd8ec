"""`latency`: idle-pickup latency under a trickle. An idle worker (blocked on BZPOPMIN), then a
Node producer adds one job at a time at 200 jobs/s for 5 s; start latency = handler start -
`data.ts` (the producer's sub-millisecond epoch time). Also reports the worker's CPU per second
and EVALSHA per job (the producer's own add counts as one)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.harness import IMPLS, Harness, Impl, check_exit
from benchmarks.job_names import NOOP_JOB
from benchmarks.processes import WorkerProcess
from benchmarks.progress import watch
from benchmarks.redis_server import blocked_clients, redis_delta, redis_snapshot
from benchmarks.report import Column, format_table, summarize
from benchmarks.result import Result, say

COLUMNS = [
    Column("p50 ms", "p50_ms", 2),
    Column("p99 ms", "p99_ms", 2),
    Column("max ms", "max_ms", 2),
    Column("wCPU ms/s", "worker_cpu_ms_per_s"),
    Column("rCPU ms/1k", "redis_cpu_ms_per_1k"),
    Column("EVALSHA/job", "evalsha_per_job", 2),
]


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def latencies_of(h: Harness, impl: Impl, worker: WorkerProcess, prefix: str) -> list[float]:
    if impl.cli:
        return [float(x) for x in h.log_path(prefix, "latency").read_text().split()]
    done = worker.event("done", 30)
    return [float(x) for x in done["latencies_ms"]]


def latency_run(h: Harness, impl: Impl, concurrency: int, rate: int, seconds: float) -> dict[str, Any]:
    jobs = int(rate * seconds)
    prefix = h.prefix(f"lat-{impl.name}-c{concurrency}")
    worker: WorkerProcess | None = None
    try:
        blocked_before = blocked_clients(h.client, "bzpopmin")
        worker = h.start(impl, prefix, concurrency, latency_jobs=jobs)
        h.wait_until_idle([worker], blocked_before)
        time.sleep(1.0)  # let it settle into its idle wait
        before = redis_snapshot(h.client)
        producer = h.node_prefill(prefix, jobs, NOOP_JOB, rate=rate)
        window = watch(h.client, h.unfinished(prefix), jobs, worker)
        after = redis_snapshot(h.client)
        h.wait_prefill(producer, timeout=30)
        if impl.side == "py":
            worker.terminate()  # Python reports its latencies on the way out; Node has exited by itself
        check_exit(impl.side, worker, worker.wait(30))
        lat = sorted(latencies_of(h, impl, worker, prefix))
        used = redis_delta(before, after, window.own_calls)
        if len(lat) != jobs:
            raise RuntimeError(f"{impl.name}: {len(lat)} latencies for {jobs} jobs")
        return {
            "impl": impl.name, "group": f"c={concurrency}", "rep": 0, "concurrency": concurrency, "rate": rate,
            "jobs": jobs, "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99), "max_ms": lat[-1],
            "worker_cpu_ms_per_s": window.cpu_s * 1000 / window.elapsed_s if window.elapsed_s else float("nan"),
            "redis_cpu_ms_per_1k": used["cpu_ms"] / jobs * 1000,
            "evalsha_per_job": used["calls"].get("evalsha", 0) / jobs,
            "failed": h.failed_count(prefix),
        }
    finally:
        if worker is not None:
            worker.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    impls = [IMPLS[name] for name in args.latency_impls]
    say(f"latency: {args.latency_rate} jobs/s for {args.latency_seconds:g} s to an idle worker, "
        f"c={','.join(map(str, args.latency_concurrency))}, impls {', '.join(args.latency_impls)}")
    runs: list[dict[str, Any]] = []
    for k, c in enumerate(args.latency_concurrency):
        for impl in impls if k % 2 == 0 else list(reversed(impls)):
            r = latency_run(h, impl, c, args.latency_rate, args.latency_seconds)
            runs.append(r)
            say(f"  c={c:<3} {impl.name:<11} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"wCPU {r['worker_cpu_ms_per_s']:.0f} ms/s  EVALSHA/job {r['evalsha_per_job']:.2f}")
    summary = summarize(runs, [c.key for c in COLUMNS])
    table = format_table(f"Idle pickup latency at {args.latency_rate} jobs/s (start latency = handler start - "
                         "data.ts; one run per row)", summary, COLUMNS, "c")
    failures = [f"{r['impl']} c={r['concurrency']}: {r['failed']} failed job(s)" for r in runs if r["failed"]]
    return Result("latency", table, summary, runs, failures=failures)
