"""`peers` (opt-in, `make bench PEERS=1`): where twenty-jobs stands among Python job queues. arq and
saq drain the same number of no-op jobs on the same private Redis, each with its own job format,
its own producer API and its own CLI with its defaults (concurrency 10, their default logging),
next to Node and `twenty-jobs work` at the same concurrency. All are measured from outside
(benchmarks/progress.py): arq keeps a job in its queue's sorted set until it finishes; saq keeps it
in `saq:<queue>:incomplete` (docs/benchmarks.md, "arq 0.28.0 and saq 0.26.4").

arq pins redis-py < 6, which twenty-jobs cannot use (docs/benchmarks.md), so both peers live in their own venv
(.venv-peers, made by `make bench PEERS=1`), never in the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.harness import IMPLS, REPO, Harness, check_exit
from benchmarks.job_names import NOOP_JOB
from benchmarks.processes import WorkerProcess
from benchmarks.progress import UnfinishedJobs, watch
from benchmarks.redis_server import delete_pattern, redis_delta, redis_snapshot
from benchmarks.report import Column, format_table, summarize
from benchmarks.result import Result, say
from benchmarks.scenarios.drain import worker_metrics

PEERS = ("arq", "saq")
COLUMNS = [
    Column("jobs/s", "throughput"),
    Column("wCPU ms/1k", "worker_cpu_ms_per_1k"),
    Column("RSS MB", "rss_mb", 1),
    Column("rCPU ms/1k", "redis_cpu_ms_per_1k"),
    Column("calls/job", "calls_per_job", 1),
]


def peers_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        raise RuntimeError(f"no peers venv at {venv}: run `make bench PEERS=1` (it creates it with arq and saq)")
    return python


def peer_env(h: Harness, queue: str, concurrency: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TJ_BENCH_REDIS_URL": h.redis_url, "TJ_BENCH_QUEUE": queue,
            "TJ_BENCH_CONCURRENCY": str(concurrency)}


def versions(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(peers_python(venv)), "-c",
         "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in ('arq', 'saq', 'redis')}))"],
        capture_output=True, text=True, check=True,
    ).stdout
    result: dict[str, str] = json.loads(out)
    return result


def peer_run(h: Harness, venv: Path, peer: str, concurrency: int, rep: int, jobs: int) -> dict[str, Any]:
    queue = h.prefix(f"{peer}-r{rep}")
    env = peer_env(h, queue, concurrency)
    worker: WorkerProcess | None = None
    try:
        produced = subprocess.run([str(peers_python(venv)), "-m", f"benchmarks.peers_{peer}", "--jobs", str(jobs)],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=60 + jobs / 200,
                                  check=False)
        if produced.returncode != 0:
            raise RuntimeError(f"{peer} producer failed: {produced.stderr[-2000:]}")
        before = redis_snapshot(h.client)
        settings = "benchmarks.peers_arq.WorkerSettings" if peer == "arq" else "benchmarks.peers_saq.settings"
        cmd = [str(venv / "bin" / peer), settings]
        worker = WorkerProcess(f"{peer} ({queue})", cmd, env, REPO, h.log_path(queue), json_lines=False)
        unfinished = UnfinishedJobs([("zcard", queue)] if peer == "arq" else [("zcard", f"saq:{queue}:incomplete")])
        window = watch(h.client, unfinished, jobs, worker)
        after = redis_snapshot(h.client)
        code = worker.stop()
        if code not in (0, -15):
            raise RuntimeError(f"{peer} exited with {code}{worker.log_tail()}")
        result = worker_metrics(window, redis_delta(before, after, window.own_calls), jobs, worker.peak_rss_mb())
        result.update(impl=peer, group=f"c={concurrency}", rep=rep, jobs=jobs, failed=0)
        return result
    finally:
        if worker is not None:
            worker.kill()
        delete_pattern(h.client, f"*{queue}*")


def bullmq_run(h: Harness, impl_name: str, concurrency: int, rep: int, jobs: int) -> dict[str, Any]:
    impl = IMPLS[impl_name]
    prefix = h.prefix(f"peers-{impl.name}-r{rep}")
    worker: WorkerProcess | None = None
    try:
        h.wait_prefill(h.node_prefill(prefix, jobs, NOOP_JOB), timeout=60 + jobs / 500)
        before = redis_snapshot(h.client)
        worker = h.start(impl, prefix, concurrency)
        window = watch(h.client, h.unfinished(prefix), jobs, worker)
        after = redis_snapshot(h.client)
        check_exit(impl.side, worker, worker.stop())
        result = worker_metrics(window, redis_delta(before, after, window.own_calls), jobs, worker.peak_rss_mb())
        result.update(impl=impl.name, group=f"c={concurrency}", rep=rep, jobs=jobs, failed=h.failed_count(prefix))
        return result
    finally:
        if worker is not None:
            worker.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    venv = Path(args.peers_venv)
    found = versions(venv)
    c = args.peers_concurrency
    say(f"peers: {args.peers_jobs:,} no-op jobs per run at c={c}, {args.reps} rep(s): node, py-default, "
        f"arq {found['arq']}, saq {found['saq']} (redis-py {found['redis']} in {venv})")
    cases = ["node", "py-default", *PEERS]
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for name in cases if rep % 2 == 0 else list(reversed(cases)):
            if name in PEERS:
                r = peer_run(h, venv, name, c, rep, args.peers_jobs)
            else:
                r = bullmq_run(h, name, c, rep, args.peers_jobs)
            runs.append(r)
            say(f"  rep {rep} {name:<11} {r['throughput']:>8,.0f} jobs/s  wCPU {r['worker_cpu_ms_per_1k']:>5.0f} ms/1k"
                f"  RSS {r['rss_mb']:>5.1f} MB  rCPU {r['redis_cpu_ms_per_1k']:>4.0f} ms/1k")
    summary = summarize(runs, [col.key for col in COLUMNS])
    title = (f"Python peers: {args.peers_jobs:,} no-op jobs at c={c}, each with its own format and CLI defaults; "
             f"medians of {args.reps} rep(s), ratios against Node")
    table = format_table(title, summary, COLUMNS, "c")
    failures = [f"{r['impl']} rep {r['rep']}: {r['failed']} failed job(s)" for r in runs if r["failed"]]
    return Result("peers", table, summary, runs, notes=[f"peer versions: {found}"], failures=failures)
