"""`make bench`: the Python worker against Twenty's Node bullmq 5.40.0 worker, side by side, in one run.

    python -m benchmarks.run                  # 20,000 jobs, c = 1, 10, 100, 3 reps, latency probe
    python -m benchmarks.run --quick          # smoke: 2,000 jobs, c = 10, 1 rep, no latency probe
    python -m benchmarks.run --jobs 5000 --reps 5 --concurrency 10,100 --no-latency

Method (shared/reference/baseline.md, "Method"):
* Every run gets its own key prefix, prefilled with N Twenty-shaped jobs by Node bullmq 5.40.0
  (node_fixture/bin/bench-prefill.js: Twenty's BullMQDriver opts, i.e. the queue's priority,
  attempts 1, removeOnComplete {age 14400, count 1000}, removeOnFail {age 604800, count 1000}).
  Then ONE worker process drains it: Node (node_fixture/bin/bench-worker.js, Twenty's worker
  options) or Python (benchmarks/py_worker.py: TwentyWorker, the code `twenty-jobs work` runs,
  uvloop, with a no-op handler from a fresh Registry) at WARNING, or at INFO (the CLI default,
  one log line per job start and end) for the `py-info` row. Keys are SCAN+UNLINKed afterwards.
* The order of the implementations alternates between repetitions.
* Throughput and worker CPU are measured inside the worker from its first processor call to its
  N-th `completed` event (getrusage / process.cpuUsage); peak RSS is the child's ru_maxrss
  (os.wait4). Redis CPU (INFO cpu, used_cpu_sys + used_cpu_user) and Redis calls (INFO
  commandstats, which also counts the calls the Lua scripts make) are deltas from just before the
  worker starts to its `done` report.
* Each summary number is the median over repetitions; each ratio is the median of the
  per-repetition Python/Node ratios.
* The benchmark starts a private `redis-server --save "" --appendonly no` on a free port (stopped by
  pid at the end) so other people's tests do not add noise to the Redis numbers; with
  --redis-url, or when that fails, it uses the given/shared Redis and says so in the report.

Results: a table on stdout and JSON in benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from twenty_jobs.twenty.queues import queue_config
from twenty_jobs.wire.keys import queue_key

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "node_fixture"
NODE_WORKER = NODE_DIR / "bin" / "bench-worker.js"
NODE_PREFILL = NODE_DIR / "bin" / "bench-prefill.js"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHARED_REDIS_URL = "redis://127.0.0.1:6379"
NODE_BULLMQ = "5.40.0"  # Twenty's pin (node_fixture/lib/bullmq.js selector)
JOB_NAME = "BenchNoopJob"

# The goals `make bench` checks, as Python/Node ratios (docs/performance-goals.md).
GOALS: dict[str, tuple[str, float]] = {
    "throughput": (">=", 1.0),
    "worker_cpu_ms_per_1k": ("<=", 1.5),
    "redis_cpu_ms_per_1k": ("<=", 1.0),
    "rss_mb": ("<=", 0.5),
}
RATIO_METRICS = ("throughput", "worker_cpu_ms_per_1k", "redis_cpu_ms_per_1k", "redis_cmd_ms_per_1k", "rss_mb",
                 "evalsha_per_job", "calls_per_job")


@dataclass(frozen=True)
class Impl:
    """One worker implementation under test."""

    name: str
    side: str  # "node" or "py"
    log_level: str = "WARNING"
    loop: str = "uvloop"


IMPLS: dict[str, Impl] = {
    "node": Impl("node", "node"),
    "py": Impl("py", "py"),
    "py-info": Impl("py-info", "py", log_level="INFO"),
    "py-asyncio": Impl("py-asyncio", "py", loop="asyncio"),
}


# ------------------------------------------------------------------------------------------ redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """`redis-server --port <free> --save "" --appendonly no`, started and stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> str:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                return url
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def redis_snapshot(client: redis.Redis) -> dict[str, Any]:
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    usec = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}
    return {"cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), "calls": calls, "usec": usec}


def redis_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    calls = {k: v - before["calls"].get(k, 0) for k, v in after["calls"].items()}
    usec = {k: v - before["usec"].get(k, 0) for k, v in after["usec"].items()}
    # Our own INFO calls are not the worker's.
    calls.pop("info", None)
    usec.pop("info", None)
    return {"cpu_ms": (after["cpu_s"] - before["cpu_s"]) * 1000,
            "calls": {k: v for k, v in sorted(calls.items()) if v},
            # Time spent executing the top-level commands (EVALSHA includes its Lua); the rest of
            # the Redis CPU is networking and the event loop.
            "command_ms": usec.get("evalsha", 0) / 1000 + usec.get("bzpopmin", 0) / 1000}


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """SCAN + UNLINK every key of one run (never FLUSHALL/FLUSHDB: the Redis may be shared)."""
    n = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            n += client.unlink(*batch)
            batch.clear()
    if batch:
        n += client.unlink(*batch)
    return n


def jobs_left(client: redis.Redis, prefix: str, queue_name: str) -> int:
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue_key(prefix, queue_name, "wait"))
    pipe.zcard(queue_key(prefix, queue_name, "prioritized"))
    pipe.llen(queue_key(prefix, queue_name, "active"))
    pipe.zcard(queue_key(prefix, queue_name, "failed"))
    return sum(int(x) for x in pipe.execute())


# ---------------------------------------------------------------------------------------- workers


class WorkerProcess:
    """A worker subprocess that speaks the JSON-lines protocol of bench-worker.js / py_worker.py."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # closed in wait()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=self.log)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.rusage: Any = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").strip())
        self.lines.put(None)

    def event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no '{name}' from the worker within {timeout:.0f} s{self.log_tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"the worker exited before '{name}'{self.log_tail()}")
            with contextlib.suppress(json.JSONDecodeError):
                record: dict[str, Any] = json.loads(line)
                if record.get("event") == name:
                    return record

    def wait(self, timeout: float = 30) -> int:
        """Reap the process with os.wait4 (for its rusage); kill it after `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.rusage = ru
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    return self.proc.returncode
                if time.monotonic() > deadline:
                    self.proc.kill()
                    _, status, ru = os.wait4(self.proc.pid, 0)
                    self.rusage = ru
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    raise RuntimeError(f"the worker did not exit within {timeout:.0f} s{self.log_tail()}")
                time.sleep(0.02)
        finally:
            self.reader.join(5)
            self.log.close()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.wait(5)

    def log_tail(self, n: int = 2000) -> str:
        self.log.flush()
        try:
            text = self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""
        return f"\n--- worker log tail ({self.log_path}) ---\n{text}" if text.strip() else ""


class Bench:
    def __init__(self, args: argparse.Namespace, redis_url: str, workdir: Path) -> None:
        self.args = args
        self.redis_url = redis_url
        self.workdir = workdir
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.run_id = f"{datetime.now().strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.node_env = {**os.environ, "REDIS_URL": redis_url, "TWENTY_JOBS_NODE_BULLMQ": NODE_BULLMQ}
        self.py_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    # -- pieces --

    def prefill(self, prefix: str, jobs: int, rate: int | None = None) -> subprocess.Popen[bytes]:
        cmd = ["node", str(NODE_PREFILL), "--queue", self.args.queue, "--name", JOB_NAME, "--jobs", str(jobs)]
        if rate is not None:
            cmd += ["--rate", str(rate)]
        return subprocess.Popen(cmd, env={**self.node_env, "TJ_PREFIX": prefix}, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_prefill(self, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"bench-prefill failed ({proc.returncode}): {err.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(out)
        return result

    def start_worker(self, impl: Impl, prefix: str, concurrency: int, jobs: int, mode: str) -> WorkerProcess:
        log_path = self.workdir / f"{prefix}.log"
        if impl.side == "node":
            cmd = ["node", str(NODE_WORKER), "--queue", self.args.queue, "--jobs", str(jobs),
                   "--concurrency", str(concurrency), "--mode", mode]
            return WorkerProcess(cmd, {**self.node_env, "TJ_PREFIX": prefix}, REPO, log_path)
        cmd = [sys.executable, "-m", "benchmarks.py_worker", "--redis-url", self.redis_url, "--prefix", prefix,
               "--queue", self.args.queue, "--jobs", str(jobs), "--concurrency", str(concurrency),
               "--mode", mode, "--log-level", impl.log_level, "--loop", impl.loop]
        return WorkerProcess(cmd, self.py_env, REPO, log_path)

    def measure(self, impl: Impl, worker: WorkerProcess, before: dict[str, Any], jobs: int,
                timeout: float) -> dict[str, Any]:
        done = worker.event("done", timeout)
        after = redis_snapshot(self.client)
        code = worker.wait(30)
        if code != 0:
            raise RuntimeError(f"{impl.name} worker exited with {code}{worker.log_tail()}")
        rd = redis_delta(before, after)
        processed = int(done["processed"])
        calls = rd["calls"]
        total_calls = sum(calls.values())
        ru = worker.rusage
        return {
            "impl": impl.name,
            "processed": processed,
            "elapsed_s": done["elapsed_s"],
            "throughput": processed / done["elapsed_s"],
            "worker_cpu_ms_per_1k": done["cpu_ms"] / processed * 1000,
            "worker_cpu_ms_process": (ru.ru_utime + ru.ru_stime) * 1000,
            "rss_mb": ru.ru_maxrss / 1024,
            "redis_cpu_ms_per_1k": rd["cpu_ms"] / processed * 1000,
            "redis_cmd_ms_per_1k": rd["command_ms"] / processed * 1000,
            "evalsha_per_job": calls.get("evalsha", 0) / processed,
            "bzpopmin_per_job": calls.get("bzpopmin", 0) / processed,
            "calls_per_job": total_calls / processed,
            "redis_calls": calls,
            "versions": {k: done[k] for k in ("bullmq", "node", "python", "loop", "log_level") if k in done},
            "_done": done,
        }

    # -- runs --

    def drain_run(self, impl: Impl, concurrency: int, rep: int) -> dict[str, Any]:
        jobs = self.args.jobs
        prefix = f"tjbench-{self.run_id}-{impl.name}-c{concurrency}-r{rep}"
        worker: WorkerProcess | None = None
        try:
            self.wait_prefill(self.prefill(prefix, jobs), timeout=60 + jobs / 500)
            before = redis_snapshot(self.client)
            worker = self.start_worker(impl, prefix, concurrency, jobs, "drain")
            result = self.measure(impl, worker, before, jobs, timeout=60 + jobs / 100)
            result.pop("_done")
            result["left_in_queue"] = jobs_left(self.client, prefix, self.args.queue)
            result.update(kind="drain", concurrency=concurrency, rep=rep)
            return result
        finally:
            if worker is not None:
                worker.kill()
            delete_prefix(self.client, prefix)

    def latency_run(self, impl: Impl, concurrency: int) -> dict[str, Any]:
        jobs = int(self.args.latency_rate * self.args.latency_seconds)
        prefix = f"tjbench-{self.run_id}-lat-{impl.name}-c{concurrency}"
        worker: WorkerProcess | None = None
        try:
            worker = self.start_worker(impl, prefix, concurrency, jobs, "latency")
            worker.event("ready", 60)
            time.sleep(1.0)  # let the worker go idle on its blocking wait
            before = redis_snapshot(self.client)
            producer = self.prefill(prefix, jobs, rate=self.args.latency_rate)
            result = self.measure(impl, worker, before, jobs, timeout=60 + self.args.latency_seconds * 3)
            self.wait_prefill(producer, timeout=30)
            lat = sorted(result.pop("_done")["latencies_ms"])
            result.update(
                kind="latency", concurrency=concurrency, rate=self.args.latency_rate,
                p50_ms=pct(lat, 0.50), p99_ms=pct(lat, 0.99), max_ms=lat[-1],
                worker_cpu_ms_per_s=result["worker_cpu_ms_per_1k"] * self.args.latency_rate / 1000,
            )
            return result
        finally:
            if worker is not None:
                worker.kill()
            delete_prefix(self.client, prefix)


def pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


# ---------------------------------------------------------------------------------------- summary


def summarize(runs: list[dict[str, Any]], impls: list[str], metrics: Sequence[str]) -> dict[str, Any]:
    """Medians per (concurrency, impl) and medians of per-repetition Python/Node ratios."""
    out: dict[str, Any] = {}
    for c in sorted({r["concurrency"] for r in runs}):
        at_c = [r for r in runs if r["concurrency"] == c]
        entry: dict[str, Any] = {"medians": {}, "ratios": {}}
        for name in impls:
            mine = [r for r in at_c if r["impl"] == name]
            if mine:
                entry["medians"][name] = {m: statistics.median(r[m] for r in mine) for m in metrics}
        node_by_rep = {r.get("rep", 0): r for r in at_c if r["impl"] == "node"}
        for name in impls:
            if name == "node":
                continue
            ratios: dict[str, list[float]] = {m: [] for m in metrics}
            for r in at_c:
                base = node_by_rep.get(r.get("rep", 0))
                if r["impl"] != name or base is None:
                    continue
                for m in metrics:
                    if base[m]:
                        ratios[m].append(r[m] / base[m])
            if any(ratios.values()):
                entry["ratios"][f"{name}/node"] = {m: statistics.median(v) for m, v in ratios.items() if v}
        out[str(c)] = entry
    return out


def goal_verdicts(summary: dict[str, Any], impl: str = "py") -> dict[str, Any]:
    verdicts: dict[str, Any] = {}
    for c, entry in summary.items():
        ratios = entry["ratios"].get(f"{impl}/node", {})
        for metric, (op, bound) in GOALS.items():
            if metric in ratios:
                value = ratios[metric]
                ok = value >= bound if op == ">=" else value <= bound
                verdicts[f"c={c} {metric}"] = {"ratio": round(value, 3), "goal": f"{op} {bound}", "met": ok}
    return verdicts


def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


DRAIN_COLUMNS = [
    ("jobs/s", "throughput", 0),
    ("wCPU ms/1k", "worker_cpu_ms_per_1k", 0),
    ("RSS MB", "rss_mb", 1),
    ("rCPU ms/1k", "redis_cpu_ms_per_1k", 0),
    ("rCmd ms/1k", "redis_cmd_ms_per_1k", 0),
    ("EVALSHA/job", "evalsha_per_job", 2),
    ("BZPOPMIN/job", "bzpopmin_per_job", 3),
    ("calls/job", "calls_per_job", 1),
]


def print_drain_table(summary: dict[str, Any], header: str) -> None:
    print(f"\n{header}")
    widths = [5, 14] + [max(12, len(t) + 1) for t, _, _ in DRAIN_COLUMNS]
    cols = ["c", "impl"] + [t for t, _, _ in DRAIN_COLUMNS]
    print("".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True))))
    for c, entry in summary.items():
        for name, med in entry["medians"].items():
            cells = [c, name] + [fmt(med[key], d) for _, key, d in DRAIN_COLUMNS]
            print("".join(x.rjust(w) if i > 1 else x.ljust(w)
                          for i, (x, w) in enumerate(zip(cells, widths, strict=True))))
        for label, ratios in entry["ratios"].items():
            cells = [c, label] + [
                (f"{ratios[key]:.2f}x" if key in ratios else "-") for _, key, _ in DRAIN_COLUMNS
            ]
            print("".join(x.rjust(w) if i > 1 else x.ljust(w)
                          for i, (x, w) in enumerate(zip(cells, widths, strict=True))))


def print_latency_table(runs: list[dict[str, Any]]) -> None:
    if not runs:
        return
    print("\nIdle pickup latency (producer adds one job at a time; start latency = processor start - data.ts)")
    print(f"{'c':<5}{'impl':<14}{'rate/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'wCPU ms/s':>11}{'rCPU ms/1k':>12}{'EVALSHA/job':>13}")
    for r in runs:
        print(f"{r['concurrency']:<5}{r['impl']:<14}{r['rate']:>8}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['max_ms']:>9.2f}{r['worker_cpu_ms_per_s']:>11.0f}{r['redis_cpu_ms_per_1k']:>12.0f}"
              f"{r['evalsha_per_job']:>13.2f}")


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=None, help="jobs per drain run (default 20000; --quick: 2000)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick: 1)")
    p.add_argument("--concurrency", default=None, help="comma-separated (default 1,10,100; --quick: 10)")
    p.add_argument("--impls", default="node,py,py-info",
                   help=f"comma-separated, from {', '.join(IMPLS)} (default node,py,py-info)")
    p.add_argument("--queue", default="webhook-queue", help="a Twenty queue (its priority is used)")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=None,
                   help="run the idle-pickup latency probe (default on; --quick: off)")
    p.add_argument("--latency-concurrency", default="1,10,100")
    p.add_argument("--latency-rate", type=int, default=200, help="jobs/s of the latency probe")
    p.add_argument("--latency-seconds", type=float, default=5.0)
    p.add_argument("--redis-url", default=None,
                   help="use this Redis instead of a private redis-server (keys are still per-run prefixed)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2000 jobs, c=10, 1 rep, no latency probe")
    p.add_argument("--out", default=None, help="JSON output path (default benchmarks/results/<timestamp>.json)")
    args = p.parse_args(argv)
    args.jobs = args.jobs or (2000 if args.quick else 20000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.concurrency = [int(x) for x in (args.concurrency or ("10" if args.quick else "1,10,100")).split(",")]
    args.latency = (not args.quick) if args.latency is None else args.latency
    args.latency_concurrency = [int(x) for x in args.latency_concurrency.split(",")]
    args.impls = [x.strip() for x in args.impls.split(",") if x.strip()]
    for name in args.impls:
        if name not in IMPLS:
            p.error(f"unknown impl '{name}' (choose from {', '.join(IMPLS)})")
    if "node" not in args.impls:
        p.error("--impls must include node (every ratio is against it)")
    return args


def environment(client: redis.Redis, redis_where: str) -> dict[str, Any]:
    import bullmq
    import redis as redis_py

    info = client.info("server")
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    try:
        import uvloop

        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = None
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_files": len(git("status", "--porcelain").splitlines()),
        "python": sys.version.split()[0],
        "bullmq_py": getattr(bullmq, "__version__", "3.4.4"),
        "redis_py": redis_py.__version__,
        "uvloop": uvloop_version,
        "node": node_version,
        "bullmq_node": NODE_BULLMQ,
        "redis_server": info.get("redis_version"),
        "redis": redis_where,
        "cpus": os.cpu_count(),
        "host": socket.gethostname(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        print("node_fixture/node_modules is missing: run `make install`", file=sys.stderr)
        return 2
    queue_cfg = queue_config(args.queue, allow_custom=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tjbench-") as tmp:
        workdir = Path(tmp)
        private: PrivateRedis | None = None
        if args.redis_url:
            redis_url, where = args.redis_url, f"given ({args.redis_url})"
        else:
            private = PrivateRedis(workdir)
            try:
                redis_url = private.start()
                where = f"private redis-server on port {private.port} (pid {private.proc.pid if private.proc else '?'})"
            except Exception as exc:
                print(f"could not start a private redis-server ({exc}); falling back to the shared "
                      f"{SHARED_REDIS_URL}: Redis CPU numbers include other clients' load", file=sys.stderr)
                private = None
                redis_url, where = SHARED_REDIS_URL, "shared 127.0.0.1:6379 (noisy: other clients' load included)"
        try:
            bench = Bench(args, redis_url, workdir)
            env = environment(bench.client, where)
            impls = [IMPLS[n] for n in args.impls]
            print(f"twenty-jobs bench: {args.jobs:,} jobs per run, queue {args.queue} (priority "
                  f"{queue_cfg.priority}), c={','.join(map(str, args.concurrency))}, {args.reps} rep(s), "
                  f"impls {', '.join(args.impls)}; Redis: {where}", flush=True)
            runs: list[dict[str, Any]] = []
            for c in args.concurrency:
                for rep in range(args.reps):
                    order = impls if rep % 2 == 0 else list(reversed(impls))
                    for impl in order:
                        r = bench.drain_run(impl, c, rep)
                        runs.append(r)
                        print(f"  c={c:<3} rep {rep} {impl.name:<10} {r['throughput']:>8,.0f} jobs/s  "
                              f"wCPU {r['worker_cpu_ms_per_1k']:>5.0f} ms/1k  RSS {r['rss_mb']:>5.1f} MB  "
                              f"rCPU {r['redis_cpu_ms_per_1k']:>4.0f} ms/1k  EVALSHA/job "
                              f"{r['evalsha_per_job']:.2f}  left {r['left_in_queue']}", flush=True)
            latency_runs: list[dict[str, Any]] = []
            if args.latency:
                lat_impls = [i for i in impls if i.name in ("node", "py")]
                for k, c in enumerate(args.latency_concurrency):
                    for impl in (lat_impls if k % 2 == 0 else list(reversed(lat_impls))):
                        r = bench.latency_run(impl, c)
                        latency_runs.append(r)
                        print(f"  latency c={c:<3} {impl.name:<6} p50 {r['p50_ms']:.2f} ms  p99 "
                              f"{r['p99_ms']:.2f} ms  EVALSHA/job {r['evalsha_per_job']:.2f}", flush=True)
        finally:
            if private is not None:
                private.stop()

    summary = summarize(runs, args.impls, (*RATIO_METRICS, "bzpopmin_per_job"))
    verdicts = goal_verdicts(summary)
    report = {
        "started": started.isoformat(),
        "duration_s": round(time.monotonic() - t0, 1),
        "config": {k: v for k, v in vars(args).items()},
        "queue_priority": queue_cfg.priority,
        "environment": env,
        "method": "medians of reps; ratios = median of per-rep Python/Node ratios; see benchmarks/run.py",
        "summary": summary,
        "goals": verdicts,
        "latency": [{k: v for k, v in r.items()} for r in latency_runs],
        "runs": runs,
    }
    print_drain_table(summary, f"Drain {args.jobs:,} prefilled jobs: medians of {args.reps} rep(s) "
                               f"(ratios: median of per-rep Python/Node)")
    print_latency_table(latency_runs)
    print("\nGoals (py/node): " + "; ".join(
        f"{k} {v['ratio']:.2f} ({v['goal']}) {'ok' if v['met'] else 'MISSED'}" for k, v in verdicts.items()))
    out = Path(args.out) if args.out else RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {out}  ({report['duration_s']} s)")
    incomplete = [r for r in runs if r["processed"] != args.jobs or r["left_in_queue"]]
    if incomplete:
        print(f"{len(incomplete)} run(s) did not process every job", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
