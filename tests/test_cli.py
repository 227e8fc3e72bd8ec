"""The CLI's own paths: enqueue, version, and the one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from .conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL, **(env or {})}
    full_env.pop("REDIS_QUEUE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "twenty_jobs.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=60,
    )


def test_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("twenty-jobs ")


async def test_enqueue_prints_the_job_id_and_writes_twentys_opts(prefix: str, redis: aioredis.Redis) -> None:
    out = cli(
        "enqueue",
        "email-queue",
        "EmailSenderJob",
        "--data",
        '{"to":"a@b.c"}',
        "--id",
        "mail-1",
        "--retry-limit",
        "3",
        "--backoff",
        "exponential:5000:0.5",
        "--prefix",
        prefix,
    )
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert job_id.startswith("mail-1-")
    stored = await redis.hgetall(f"{prefix}:email-queue:{job_id}")
    opts = json.loads(stored["opts"])
    assert opts["attempts"] == 4 and opts["backoff"] == {"type": "exponential", "delay": 5000, "jitter": 0.5}
    assert stored["priority"] == "1"
    dup = cli("enqueue", "email-queue", "EmailSenderJob", "--id", "mail-1", "--prefix", prefix)
    assert dup.returncode == 0 and dup.stdout == "" and "deduplicated" in dup.stderr


async def test_enqueue_reads_data_from_stdin(prefix: str, redis: aioredis.Redis) -> None:
    out = cli("enqueue", "workspace-queue", "Echo", "--data", "-", "--prefix", prefix, stdin='{"x": [1, null]}')
    assert out.returncode == 0, out.stderr
    assert json.loads(await redis.hget(f"{prefix}:workspace-queue:{out.stdout.strip()}", "data") or "") == {
        "x": [1, None]
    }


def test_unknown_queue_is_one_line_with_a_suggestion() -> None:
    out = cli("enqueue", "emial-queue", "X")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Did you mean 'email-queue'" in out.stderr


def test_bad_json_is_one_line() -> None:
    out = cli("enqueue", "email-queue", "X", "--data", "{oops")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not valid JSON" in out.stderr


def test_unreachable_redis_is_one_line_without_the_password() -> None:
    out = cli("enqueue", "email-queue", "X", "--redis-url", "redis://:s3cret@127.0.0.1:1")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "cannot reach Redis" in out.stderr and "s3cret" not in out.stderr


def test_work_refuses_unknown_queue_and_missing_module() -> None:
    out = cli("work", "--queue", "nope-queue", "--no-builtin-jobs")
    assert out.returncode == 2 and "unknown queue 'nope-queue'" in out.stderr
    out = cli("work", "--import", "no_such_module_xyz", "--no-builtin-jobs")
    assert out.returncode == 2 and "cannot import handler module 'no_such_module_xyz'" in out.stderr


def test_work_with_unreachable_redis_exits_1_with_one_line() -> None:
    out = cli("work", "--import", "tests.cli_handlers", "--no-builtin-jobs", "--redis-url", "redis://127.0.0.1:1")
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr.splitlines()[-1]


async def test_work_burst_processes_and_exits_0_printing_what_it_serves(prefix: str, redis: aioredis.Redis) -> None:
    ids = [
        cli("enqueue", "workspace-queue", "Echo", "--data", json.dumps({"i": i}), "--prefix", prefix).stdout.strip()
        for i in range(3)
    ]
    out = cli("work", "--import", "tests.cli_handlers", "--no-builtin-jobs", "--burst", "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert "serving workspace-queue" in out.stderr and "Sleepy" in out.stderr and "Echo" in out.stderr
    for i, job_id in enumerate(ids):
        assert json.loads(await redis.hget(f"{prefix}:workspace-queue:{job_id}", "returnvalue") or "") == {"i": i}


def test_worker_excluded_queues_env_is_honoured() -> None:
    out = cli(
        "work",
        "--import",
        "tests.cli_handlers",
        "--no-builtin-jobs",
        "--burst",
        env={"WORKER_EXCLUDED_QUEUES": "workspace-queue"},
    )
    assert out.returncode == 2 and "no queue to serve" in out.stderr


async def test_work_serves_twentys_metric_names_and_check_sees_the_worker(prefix: str) -> None:
    import asyncio
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    proc = subprocess.Popen(  # noqa: ASYNC220 (a background process for the whole test)
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--import", "tests.cli_handlers", "--no-builtin-jobs",
         "--prefix", prefix, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        job_id = cli("enqueue", "workspace-queue", "Echo", "--data", '{"workspaceId": "ws-9"}', "--prefix", prefix)
        assert job_id.returncode == 0
        body = ""
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    body = ""
                if "job_completed_total" in body and 'job_name="Echo"' in body:
                    break
                await asyncio.sleep(0.1)
            healthz = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert 'job_completed_total{' in body and 'queue="workspace-queue"' in body and 'workspace_id="ws-9"' in body
        assert "job_latency_ms_bucket" in body
        assert healthz.status_code == 200
        check = cli("check", "--queue", "workspace-queue", "--prefix", prefix)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
