"""`webhook`: Twenty's real work. CallWebhookJob batches of 20 signed payloads
(benchmarks/webhook_jobs.py) delivered to a local receiver that answers after 5 ms
(benchmarks/receiver.py), at webhook-queue's concurrency in Twenty (1) and at 10x that.

    node        node_fixture/bin/bench-webhook-worker.js: Twenty's CallWebhookJob on a Node bullmq
                worker (Promise.all of signed fetch POSTs), Twenty's worker options
    py-default  `twenty-jobs work --queue webhook-queue --concurrency C` with the built-in port,
                default logging to a file, OUTBOUND_HTTP_SAFE_MODE_ENABLED=false so the
                loopback receiver is allowed
    py-guarded  the same with safe mode on and 127.0.0.1 allow-listed: every delivery goes through
                the address check, as it does in production with Twenty's default settings

Reported per run: deliveries/s over the measured window, worker CPU per 1,000 deliveries,
connections the worker opened per 1,000 deliveries (counted by the receiver), the receiver's own
CPU per 1,000 deliveries (to show it is not the bottleneck), and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from benchmarks.harness import NODE_DIR, REPO, UNTIL_STOPPED, Harness, check_exit
from benchmarks.processes import WorkerProcess
from benchmarks.progress import watch
from benchmarks.report import Column, Goal, format_table, format_verdicts, judge, summarize
from benchmarks.result import Result, say
from benchmarks.webhook_jobs import PAYLOADS_PER_JOB, prefill
from twenty_jobs.twenty.queues import queue_config

QUEUE = "webhook-queue"
NODE_WEBHOOK_WORKER = NODE_DIR / "bin" / "bench-webhook-worker.js"
SECRET = "bench-webhook-secret"
RECEIVER_DELAY_MS = 5.0
IMPLS = ("node", "py-default", "py-guarded")

COLUMNS = [
    Column("deliveries/s", "deliveries_per_s"),
    Column("wCPU ms/1k dlv", "worker_cpu_ms_per_1k"),
    Column("conns/1k dlv", "connections_per_1k", 1),
    Column("RSS MB", "rss_mb", 1),
    Column("recvCPU ms/1k", "receiver_cpu_ms_per_1k"),
]
GOALS = [
    Goal("py-default/node", "deliveries_per_s", ">=", 1.0),
    Goal("py-default/node", "worker_cpu_ms_per_1k", "<=", 1.0),
]


class ReceiverProcess:
    """benchmarks/receiver.py in its own process; `stats()` asks it for its counters."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log: IO[bytes] = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.receiver", "--delay-ms", str(RECEIVER_DELAY_MS), "--secret", SECRET],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )
        self.port = int(self._read("ready")["port"])
        self.url = f"http://127.0.0.1:{self.port}/twenty-webhook"

    def _read(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the webhook receiver exited (see {self.log.name})")
        record: dict[str, Any] = json.loads(line)
        if record.get("event") != event:
            raise RuntimeError(f"the webhook receiver said {record} instead of '{event}'")
        return record

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._read("stats")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def start_worker(h: Harness, impl: str, prefix: str, concurrency: int) -> WorkerProcess:
    if impl == "node":
        cmd = ["node", str(NODE_WEBHOOK_WORKER), "--queue", QUEUE, "--jobs", str(UNTIL_STOPPED),
               "--concurrency", str(concurrency)]
        return WorkerProcess(f"node webhook ({prefix})", cmd, h.node_env(prefix), REPO, h.log_path(prefix))
    if impl == "py-default":
        env = {"OUTBOUND_HTTP_SAFE_MODE_ENABLED": "false"}
    else:
        env = {"OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS": "127.0.0.1"}
    return h.cli_worker(prefix, concurrency, queue=QUEUE, imports=(), env=env)


def webhook_run(h: Harness, receiver: ReceiverProcess, impl: str, concurrency: int, rep: int,
                jobs: int) -> dict[str, Any]:
    prefix = h.prefix(f"webhook-{impl}-c{concurrency}-r{rep}")
    worker: WorkerProcess | None = None
    try:
        added = asyncio.run(prefill(h.redis_url, prefix, QUEUE, jobs, receiver.url, SECRET))
        if added != jobs:
            raise RuntimeError(f"prefilled {added} of {jobs} CallWebhookJob jobs")
        before = receiver.stats()
        worker = start_worker(h, impl, prefix, concurrency)
        window = watch(h.client, h.unfinished(prefix, QUEUE), jobs, worker)
        check_exit("node" if impl == "node" else "py", worker, worker.stop())
        after = receiver.stats()
        deliveries = after["deliveries"] - before["deliveries"]
        in_window = window.jobs * PAYLOADS_PER_JOB
        return {
            "impl": impl, "group": f"c={concurrency}", "rep": rep, "concurrency": concurrency, "jobs": jobs,
            "deliveries": deliveries,
            "deliveries_expected": jobs * PAYLOADS_PER_JOB,
            "deliveries_per_s": in_window / window.elapsed_s if window.elapsed_s else float("nan"),
            "elapsed_s": window.elapsed_s,
            "worker_cpu_ms_per_1k": window.cpu_ms_per(in_window / 1000),
            "connections": after["connections"] - before["connections"],
            "connections_per_1k": (after["connections"] - before["connections"]) / deliveries * 1000
            if deliveries else float("nan"),
            "receiver_cpu_ms_per_1k": (after["cpu_s"] - before["cpu_s"]) * 1e6 / deliveries
            if deliveries else float("nan"),
            "receiver_max_in_flight": after["max_in_flight"],
            "signed_bad": after["signed_bad"] - before["signed_bad"],
            "unsigned": after["unsigned"] - before["unsigned"],
            "rss_mb": worker.peak_rss_mb(),
            "failed": h.failed_count(prefix, QUEUE),
        }
    finally:
        if worker is not None:
            worker.kill()
        h.cleanup(prefix)


def run(h: Harness, args: argparse.Namespace) -> Result:
    twenty_concurrency = queue_config(QUEUE).concurrency
    concurrencies = [twenty_concurrency, 10 * twenty_concurrency]
    say(f"webhook: {args.webhook_jobs:,} CallWebhookJob jobs x {PAYLOADS_PER_JOB} payloads per run, receiver "
        f"answers after {RECEIVER_DELAY_MS:g} ms, c={','.join(map(str, concurrencies))}, {args.reps} rep(s)")
    receiver = ReceiverProcess(h.py_env(), h.log_path(h.prefix("receiver"), "receiver"))
    runs: list[dict[str, Any]] = []
    try:
        for c in concurrencies:
            for rep in range(args.reps):
                for impl in IMPLS if rep % 2 == 0 else tuple(reversed(IMPLS)):
                    r = webhook_run(h, receiver, impl, c, rep, args.webhook_jobs)
                    runs.append(r)
                    say(f"  c={c:<3} rep {rep} {impl:<11} {r['deliveries_per_s']:>7,.0f} deliveries/s  "
                        f"wCPU {r['worker_cpu_ms_per_1k']:>5.0f} ms/1k  conns/1k {r['connections_per_1k']:>6.1f}  "
                        f"recvCPU {r['receiver_cpu_ms_per_1k']:>4.0f} ms/1k")
    finally:
        receiver.close()
    summary = summarize(runs, [c.key for c in COLUMNS])
    verdicts = judge(summary, GOALS)
    title = (f"Webhook delivery: CallWebhookJob x {PAYLOADS_PER_JOB} payloads, receiver answers after "
             f"{RECEIVER_DELAY_MS:g} ms; medians of {args.reps} rep(s) (c={twenty_concurrency} is Twenty's "
             "webhook-queue concurrency)")
    table = format_table(title, summary, COLUMNS, "c") + "\n" + format_verdicts(verdicts)
    failures = [
        f"{r['impl']} c={r['concurrency']} rep {r['rep']}: {r['deliveries']} of {r['deliveries_expected']} "
        f"deliveries, {r['signed_bad']} bad signature(s), {r['unsigned']} unsigned, {r['failed']} failed job(s)"
        for r in runs
        if r["deliveries"] < r["deliveries_expected"] or r["signed_bad"] or r["unsigned"] or r["failed"]
    ]
    return Result("webhook", table, summary, runs, verdicts, failures=failures)
