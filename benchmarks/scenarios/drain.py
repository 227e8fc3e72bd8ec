"""`drain`: N prefilled no-op jobs drained by one worker, at concurrency 1, 10 and 100.

Each run gets its own key prefix, prefilled by Node bullmq (node_fixture/bin/bench-prefill.js:
Twenty-shaped data, Twenty's BullMQDriver options), then one worker drains it and is measured from
outside (benchmarks/progress.py). Redis CPU and commandstats are deltas from just before the
worker starts to the poll that sees the queue empty.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.harness import IMPLS, Harness, Impl, check_exit
from benchmarks.job_names import NOOP_JOB
from benchmarks.processes import WorkerProcess
from benchmarks.progress import Window, watch
from benchmarks.redis_server import redis_delta, redis_snapshot
from benchmarks.report import Column, Goal, format_table, format_verdicts, judge, summarize
from benchmarks.result import Result, say

COLUMNS = [
    Column("jobs/s", "throughput"),
    Column("wCPU ms/1k", "worker_cpu_ms_per_1k"),
    Column("RSS MB", "rss_mb", 1),
    Column("rCPU ms/1k", "redis_cpu_ms_per_1k"),
    Column("rCmd ms/1k", "redis_cmd_ms_per_1k"),
    Column("EVALSHA/job", "evalsha_per_job", 2),
    Column("BZPOPMIN/job", "bzpopmin_per_job", 3),
    Column("calls/job", "calls_per_job", 1),
]
METRICS = [c.key for c in COLUMNS]

# docs/performance-goals.md: Python/Node ratios in the configuration users run
# (py-default). At concurrency 100 both sides sit at what one Redis core can do, so the goal
# there is parity with Node at that ceiling.
GOALS = [
    Goal("py-default/node", "throughput", ">=", 1.2, ("c=1", "c=10")),
    Goal("py-default/node", "throughput", ">=", 1.0, ("c=100",)),
    Goal("py-default/node", "worker_cpu_ms_per_1k", "<=", 0.7),
    Goal("py-default/node", "redis_cpu_ms_per_1k", "<=", 1.0),
    Goal("py-default/node", "rss_mb", "<=", 0.5),
]


def worker_metrics(window: Window, redis_used: dict[str, Any], jobs: int, peak_rss_mb: float) -> dict[str, Any]:
    calls = redis_used["calls"]
    return {
        "throughput": window.throughput,
        "elapsed_s": window.elapsed_s,
        "jobs_in_window": window.jobs,
        "worker_cpu_ms_per_1k": window.cpu_ms_per(window.jobs / 1000),
        "rss_mb": peak_rss_mb,
        "redis_cpu_ms_per_1k": redis_used["cpu_ms"] / jobs * 1000,
        "redis_cmd_ms_per_1k": redis_used["command_ms"] / jobs * 1000,
        "evalsha_per_job": calls.get("evalsha", 0) / jobs,
        "bzpopmin_per_job": calls.get("bzpopmin", 0) / jobs,
        "calls_per_job": sum(calls.values()) / jobs,
        "redis_calls": calls,
        "polls": window.polls,
    }


def drain_run(h: Harness, impl: Impl, concurrency: int, rep: int, jobs: int) -> dict[str, Any]:
    prefix = h.prefix(f"{impl.name}-c{concurrency}-r{rep}")
    worker: WorkerProcess | None = None
    try:
        h.wait_prefill(h.node_prefill(prefix, jobs, NOOP_JOB), timeout=60 + jobs / 500)
        before = redis_snapshot(h.client)
        worker = h.start(impl, prefix, concurrency)
        window = watch(h.client, h.unfinished(prefix), jobs, worker)
        after = redis_snapshot(h.client)
        check_exit(impl.side, worker, worker.stop())
        result = worker_metrics(window, redis_delta(before, after, window.own_calls), jobs, worker.peak_rss_mb())
        result.update(impl=impl.name, group=f"c={concurrency}", rep=rep, concurrency=concurrency,
                      jobs=jobs, failed=h.failed_count(prefix))
        return result
    finally:
        if worker is not None:
            worker.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    impls = [IMPLS[name] for name in args.impls]
    say(f"drain: {args.jobs:,} no-op jobs per run, queue {h.queue}, c={','.join(map(str, args.concurrency))}, "
        f"{args.reps} rep(s), impls {', '.join(args.impls)}")
    runs: list[dict[str, Any]] = []
    for c in args.concurrency:
        for rep in range(args.reps):
            for impl in impls if rep % 2 == 0 else list(reversed(impls)):
                r = drain_run(h, impl, c, rep, args.jobs)
                runs.append(r)
                say(f"  c={c:<3} rep {rep} {impl.name:<11} {r['throughput']:>8,.0f} jobs/s  "
                    f"wCPU {r['worker_cpu_ms_per_1k']:>5.0f} ms/1k  RSS {r['rss_mb']:>5.1f} MB  "
                    f"rCPU {r['redis_cpu_ms_per_1k']:>4.0f} ms/1k  EVALSHA/job {r['evalsha_per_job']:.2f}")
    summary = summarize(runs, METRICS)
    verdicts = judge(summary, GOALS)
    title = (f"Drain {args.jobs:,} prefilled no-op jobs: medians of {args.reps} rep(s); "
             "ratios = per-rep Python/Node")
    table = format_table(title, summary, COLUMNS, "c") + "\n" + format_verdicts(verdicts)
    failures = [f"{r['impl']} c={r['concurrency']} rep {r['rep']}: {r['failed']} failed job(s)"
                for r in runs if r["failed"]]
    return Result("drain", table, summary, runs, verdicts, failures=failures)
