"""`memory`: 100,000 no-op jobs through one worker. VmRSS (/proc/<pid>/status) after a warm-up
of 10,000 jobs against VmRSS at the end, while the worker is still running; growth = end / warm-up
- 1. A leak of a few hundred bytes per job shows here as several percent. Node (the same jobs
through Twenty's worker configuration) is measured alongside."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.harness import IMPLS, Harness, check_exit
from benchmarks.job_names import NOOP_JOB
from benchmarks.processes import WorkerProcess
from benchmarks.progress import watch
from benchmarks.report import Column, Goal, format_table, format_verdicts, judge, summarize
from benchmarks.result import Result, say

IMPL_NAMES = ("node", "py-default")
COLUMNS = [
    Column("RSS warm MB", "rss_warm_mb", 1),
    Column("RSS end MB", "rss_end_mb", 1),
    Column("growth %", "growth_pct", 1),
    Column("peak RSS MB", "peak_rss_mb", 1),
    Column("jobs/s", "throughput"),
]
GOALS = [
    Goal("py-default", "growth_pct", "<=", 10.0),
    Goal("py-default/node", "rss_end_mb", "<=", 0.5),
]


def memory_run(h: Harness, impl_name: str, jobs: int, warmup: int, concurrency: int) -> dict[str, Any]:
    impl = IMPLS[impl_name]
    prefix = h.prefix(f"mem-{impl.name}")
    worker: WorkerProcess | None = None
    try:
        h.wait_prefill(h.node_prefill(prefix, jobs, NOOP_JOB), timeout=120 + jobs / 500)
        worker = h.start(impl, prefix, concurrency)
        marks = sorted({warmup, *range(warmup, jobs, max(1, jobs // 10)), jobs})
        window = watch(h.client, h.unfinished(prefix), jobs, worker, rss_at=marks)
        check_exit(impl.side, worker, worker.stop())
        samples = dict(window.rss_samples)
        at_warmup = next(rss for done, rss in window.rss_samples if done >= warmup)
        at_end = window.rss_samples[-1][1]
        return {
            "impl": impl.name, "group": f"c={concurrency}", "rep": 0, "jobs": jobs, "warmup": warmup,
            "rss_warm_mb": at_warmup, "rss_end_mb": at_end, "growth_pct": (at_end / at_warmup - 1) * 100,
            "peak_rss_mb": worker.peak_rss_mb(), "throughput": window.throughput,
            "rss_curve": [{"jobs_done": done, "rss_mb": rss} for done, rss in samples.items()],
            "failed": h.failed_count(prefix),
        }
    finally:
        if worker is not None:
            worker.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    say(f"memory: {args.memory_jobs:,} no-op jobs through one worker at c={args.memory_concurrency}, RSS after "
        f"{args.memory_warmup:,} jobs vs at the end, impls {', '.join(IMPL_NAMES)}")
    runs = []
    for name in IMPL_NAMES:
        r = memory_run(h, name, args.memory_jobs, args.memory_warmup, args.memory_concurrency)
        runs.append(r)
        say(f"  {name:<11} RSS {r['rss_warm_mb']:.1f} MB after {args.memory_warmup:,} jobs, {r['rss_end_mb']:.1f} MB "
            f"after {args.memory_jobs:,} ({r['growth_pct']:+.1f}%)")
    summary = summarize(runs, [c.key for c in COLUMNS])
    verdicts = judge(summary, GOALS)
    title = (f"Memory: {args.memory_jobs:,} jobs through one worker, VmRSS after {args.memory_warmup:,} (warm) "
             "and at the end; one run per row")
    table = format_table(title, summary, COLUMNS, "c") + "\n" + format_verdicts(verdicts)
    failures = [f"{r['impl']}: {r['failed']} failed job(s)" for r in runs if r["failed"]]
    return Result("memory", table, summary, runs, verdicts, failures=failures)
