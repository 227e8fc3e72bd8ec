"""`make bench`: twenty-jobs against Twenty's Node bullmq worker, side by side, in one run.

    python -m benchmarks.run                                 # drain, latency, webhook, cpu, memory
    python -m benchmarks.run --quick                         # the same, small (a smoke test)
    python -m benchmarks.run --scenarios drain,webhook --reps 5
    python -m benchmarks.run --peers                         # + arq and saq (needs .venv-peers)

Scenarios (benchmarks/scenarios/, benchmarks/README.md has the method):
  drain    N prefilled no-op jobs drained at concurrency 1, 10, 100
  latency  idle-pickup latency under a 200 jobs/s trickle
  webhook  CallWebhookJob batches of 20 signed payloads to a receiver answering after 5 ms
  cpu      handlers that spend 2 ms of CPU; Python with 1 and 2 processes, Node with one
  memory   RSS of one worker after 10,000 jobs and after 100,000
  peers    arq and saq next to twenty-jobs and Node (opt-in)

Every worker runs in its own process on a private redis-server (a free port, stopped by pid), and
is measured from outside by polling its queue (benchmarks/progress.py). The order of the
implementations alternates between repetitions. Results: tables on stdout, everything in
benchmarks/results/<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import IMPLS, NODE_DIR, REPO, Harness
from benchmarks.redis_server import PrivateRedis
from benchmarks.result import Result, say
from benchmarks.scenarios import cpu, drain, latency, memory, peers, webhook

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHARED_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_SCENARIOS = ("drain", "latency", "webhook", "cpu", "memory")
SCENARIOS: dict[str, Callable[[Harness, argparse.Namespace], Result]] = {
    "drain": drain.run, "latency": latency.run, "webhook": webhook.run, "cpu": cpu.run,
    "memory": memory.run, "peers": peers.run,
}


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# option: (full run, --quick)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "reps": (3, 1),
    "jobs": (20_000, 2_000),
    "concurrency": ("1,10,100", "10"),
    "latency_concurrency": ("1,10,100", "10"),
    "latency_seconds": (5.0, 2.0),
    "webhook_jobs": (200, 20),
    "cpu_jobs": (2_000, 200),
    "memory_jobs": (100_000, 5_000),
    "memory_warmup": (10_000, 1_000),
    "peers_jobs": (20_000, 1_000),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, from {', '.join(SCENARIOS)} (default {','.join(DEFAULT_SCENARIOS)})")
    p.add_argument("--peers", action="store_true", help="add the peers scenario (arq, saq; needs --peers-venv)")
    p.add_argument("--quick", action="store_true", help="every scenario small: a smoke test, not a measurement")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    p.add_argument("--queue", default="webhook-queue", help="the Twenty queue no-op jobs go to (its priority is used)")
    p.add_argument("--node-bullmq", default="5.40.0",
                   help="the Node bullmq build (node_fixture/lib/bullmq.js selector; 5.78.0 is current Twenty's pin)")
    p.add_argument("--redis-url", help="use this Redis instead of a private redis-server (keys stay per-run prefixed)")
    p.add_argument("--out", help="JSON output path (default benchmarks/results/<timestamp>.json)")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="keep every worker's log (and the private Redis's) in DIR instead of a deleted temp dir")
    g = p.add_argument_group("drain")
    g.add_argument("--jobs", type=int, help="jobs per drain run (default 20000; --quick 2000)")
    g.add_argument("--concurrency", help="comma-separated (default 1,10,100; --quick 10)")
    g.add_argument("--impls", default="node,py,py-info,py-default",
                   help=f"comma-separated, from {', '.join(IMPLS)} (default node,py,py-info,py-default)")
    g = p.add_argument_group("latency")
    g.add_argument("--latency-concurrency", help="comma-separated (default 1,10,100; --quick 10)")
    g.add_argument("--latency-rate", type=int, default=200, help="jobs/s the producer adds (default 200)")
    g.add_argument("--latency-seconds", type=float, help="how long it adds them (default 5; --quick 2)")
    g.add_argument("--latency-impls", default="node,py,py-default")
    g = p.add_argument_group("webhook")
    g.add_argument("--webhook-jobs", type=int,
                   help="CallWebhookJob jobs (x20 payloads) per run (default 200; --quick 20)")
    g = p.add_argument_group("cpu")
    g.add_argument("--cpu-jobs", type=int, help="jobs per run (default 2000; --quick 200)")
    g.add_argument("--cpu-ms", type=float, default=2.0, help="CPU each job spends (default 2 ms)")
    g.add_argument("--cpu-concurrency", type=int, default=10, help="per process (default 10)")
    g.add_argument("--cpu-processes", default="1,2", help="Python process counts (default 1,2)")
    g = p.add_argument_group("memory")
    g.add_argument("--memory-jobs", type=int, help="jobs through the worker (default 100000; --quick 5000)")
    g.add_argument("--memory-warmup", type=int, help="jobs before the warm RSS sample (default 10000; --quick 1000)")
    g.add_argument("--memory-concurrency", type=int, default=10)
    g = p.add_argument_group("peers")
    g.add_argument("--peers-jobs", type=int, help="jobs per run (default 20000; --quick 1000)")
    g.add_argument("--peers-concurrency", type=int, default=10, help="default 10, arq's and saq's own default")
    g.add_argument("--peers-venv", default=str(REPO / ".venv-peers"), help="venv with arq and saq")
    args = p.parse_args(argv)

    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.concurrency = int_list(args.concurrency)
    args.latency_concurrency = int_list(args.latency_concurrency)
    args.cpu_processes = int_list(args.cpu_processes)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.peers and "peers" not in args.scenarios:
        args.scenarios.append("peers")
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario '{s}' (choose from {', '.join(SCENARIOS)})")
    args.impls = [x.strip() for x in args.impls.split(",") if x.strip()]
    args.latency_impls = [x.strip() for x in args.latency_impls.split(",") if x.strip()]
    for name in [*args.impls, *args.latency_impls]:
        if name not in IMPLS:
            p.error(f"unknown impl '{name}' (choose from {', '.join(IMPLS)})")
    if "node" not in args.impls or "node" not in args.latency_impls:
        p.error("--impls and --latency-impls must include node (every ratio is against it)")
    if args.memory_warmup >= args.memory_jobs:
        p.error("--memory-warmup must be below --memory-jobs")
    return args


def environment(h: Harness, redis_where: str) -> dict[str, Any]:
    import bullmq
    import redis as redis_py

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    try:
        import uvloop

        uvloop_version: str | None = uvloop.__version__
    except ImportError:
        uvloop_version = None
    return {
        "git_commit": run("git", "rev-parse", "--short", "HEAD"),
        "git_uncommitted_files": len(run("git", "status", "--porcelain").splitlines()),
        "python": sys.version.split()[0],
        "bullmq_py": getattr(bullmq, "__version__", "3.4.4"),
        "redis_py": redis_py.__version__,
        "uvloop": uvloop_version,
        "node": run("node", "--version"),
        "bullmq_node": h.node_bullmq,
        "redis_server": h.client.info("server").get("redis_version"),
        "redis": redis_where,
        "twenty_jobs_work_has_processes": h.has_processes_flag(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "host": socket.gethostname(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        print("node_fixture/node_modules is missing: run `make install`", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    t0 = time.monotonic()
    results: list[Result] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tjbench-") as tmp:
        workdir = Path(args.keep_logs) if args.keep_logs else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        private: PrivateRedis | None = None
        if args.redis_url:
            redis_url, where = args.redis_url, f"given ({args.redis_url})"
        else:
            private = PrivateRedis(workdir)
            try:
                redis_url = private.start()
                where = f"private redis-server on port {private.port}"
            except Exception as exc:
                print(f"could not start a private redis-server ({exc}); falling back to the shared "
                      f"{SHARED_REDIS_URL}: Redis CPU numbers include other clients' load", file=sys.stderr)
                private = None
                redis_url, where = SHARED_REDIS_URL, "shared 127.0.0.1:6379 (noisy: other clients' load included)"
        try:
            h = Harness(redis_url, workdir, args.queue, args.node_bullmq)
            env = environment(h, where)
            say(f"twenty-jobs bench: scenarios {', '.join(args.scenarios)}; Node bullmq {args.node_bullmq}; "
                f"Redis: {where}{' (quick: a smoke test, not a measurement)' if args.quick else ''}")
            for name in args.scenarios:
                t = time.monotonic()
                try:
                    result = SCENARIOS[name](h, args)
                except Exception as exc:  # one broken scenario must not lose the others' results
                    errors.append(f"{name}: {exc}")
                    say(f"{name}: FAILED: {exc}")
                    continue
                results.append(result)
                say(f"\n{result.table}\n({name}: {time.monotonic() - t:.0f} s)\n")
        finally:
            if private is not None:
                private.stop()

    report = {
        "started": started.isoformat(),
        "duration_s": round(time.monotonic() - t0, 1),
        "quick": args.quick,
        "config": vars(args),
        "environment": env,
        "method": "benchmarks/README.md: measured from outside by polling the queue; medians of reps; "
                  "ratios = median of per-rep Python/Node ratios",
        "scenarios": {r.name: r.as_json() for r in results},
        "errors": errors,
    }
    out = Path(args.out) if args.out else RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    for r in results:
        for failure in r.failures:
            errors.append(f"{r.name}: {failure}")
    say(f"JSON: {out}  ({report['duration_s']} s)")
    if errors:
        print("\n".join(["Incomplete:", *errors]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
