"""The Redis side of `make bench`: a private redis-server, and what Redis spent between two moments.

Every run gets its own key prefix on a private `redis-server --save "" --appendonly no` started on
a free port and stopped by pid, so other people's tests on the shared 127.0.0.1:6379 do not land in
the Redis numbers (and nothing shared is ever flushed: keys are SCAN+UNLINKed by pattern).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis


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


def redis_delta(before: dict[str, Any], after: dict[str, Any], own_calls: dict[str, int] | None = None
                ) -> dict[str, Any]:
    """What Redis did between two snapshots, less the benchmark's own progress polls (`own_calls`)."""
    calls = {k: v - before["calls"].get(k, 0) for k, v in after["calls"].items()}
    usec = {k: v - before["usec"].get(k, 0) for k, v in after["usec"].items()}
    # Our own INFO calls and progress polls are not the worker's.
    calls.pop("info", None)
    usec.pop("info", None)
    for name, n in (own_calls or {}).items():
        if name in calls:
            calls[name] = max(0, calls[name] - n)
    return {"cpu_ms": (after["cpu_s"] - before["cpu_s"]) * 1000,
            "calls": {k: v for k, v in sorted(calls.items()) if v},
            # Time spent executing the top-level commands (EVALSHA includes its Lua); the rest of
            # the Redis CPU is networking and the event loop.
            "command_ms": usec.get("evalsha", 0) / 1000 + usec.get("bzpopmin", 0) / 1000}


def delete_pattern(client: redis.Redis, pattern: str) -> int:
    """SCAN + UNLINK the keys of one run (never FLUSHALL/FLUSHDB: the Redis may be shared)."""
    n = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            n += client.unlink(*batch)
            batch.clear()
    if batch:
        n += client.unlink(*batch)
    return n


def blocked_clients(client: redis.Redis, command: str) -> int:
    """How many connections sit in `command` (an idle bullmq worker blocks on BZPOPMIN)."""
    listing = client.client_list()
    return sum(1 for c in listing if c.get("cmd") == command)
