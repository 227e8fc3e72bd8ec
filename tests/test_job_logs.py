"""The per-job log lines of the CLI's log setup (docs/job-logs.md): written without LogRecords and
buffered, yet the same text and JSON as through `logging`, in order with every other record, at
the configured level, and never lost when the worker stops, a handler raises or the process dies
of an exception."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from twenty_jobs.observability.job_lines import PIPE_BUF, LineBuffer
from twenty_jobs.observability.logs import LogHandler, setup_logging
from twenty_jobs.runtime.events import JobLogObserver
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.wire.job import JobRecord, parse_job_hash

from .conftest import REDIS_URL, wait_until

REPO = Path(__file__).resolve().parent.parent
Q = "workspace-queue"


@pytest.fixture
def log_setup() -> Iterator[None]:
    """Lets a test call setup_logging; the root logger's handlers and level are put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if isinstance(handler, LogHandler):
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def job(job_id: str, name: str, data: str = "{}", **fields: str) -> JobRecord:
    return parse_job_hash(job_id, {"name": name, "data": data, "opts": "{}", "timestamp": "1700000000000", **fields})


WORKSPACE = "20202020-1c25-4d02-bf25-6aeccf7ea419"
JOBS = [
    job("1", "CallWebhookJob", f'{{"workspaceId":"{WORKSPACE}"}}'),
    job("2", "NoWorkspace", '{"x":1}', atm="2"),
    job("ünï-3", 'quote" back\\slash', '{"workspaceId":"w\\"s"}'),
    job("4", "Émoji 🚀\ttab", '{"workspaceId":""}'),
]


def emit_both_ways(stream: io.StringIO, fast: bool) -> str:
    observer = JobLogObserver(fast=fast)
    assert (observer.writer is not None) == fast
    for record in JOBS:
        observer.job_started("webhook-queue", record)
        observer.job_finished("webhook-queue", record, "completed", 12.34567, None)
    observer.flush()
    out = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    return out


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("now", [1700000000.125, 1719835199.5, 1735689599.875])
def test_fast_job_lines_are_exactly_what_logging_writes(
    fmt: str, now: float, log_setup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One clock for both paths (logging reads time.time on 3.11, time.time_ns later; the values
    # are exact in binary so both readings agree).
    monkeypatch.setattr(time, "time", lambda: now)
    monkeypatch.setattr(time, "time_ns", lambda: int(now * 1000) * 1_000_000)
    stream = io.StringIO()
    setup_logging("INFO", fmt, stream=stream)
    through_logging = emit_both_ways(stream, fast=False)
    fast = emit_both_ways(stream, fast=True)
    assert fast == through_logging
    assert len(fast.splitlines()) == 2 * len(JOBS)
    if fmt == "json":
        first = json.loads(fast.splitlines()[0])
        assert first["message"] == f"start webhook-queue CallWebhookJob #1 attempt 1 [workspace={WORKSPACE}]"
    else:
        assert " INFO    twenty_jobs.job: completed webhook-queue NoWorkspace #2 attempt 2 in 12.3 ms\n" in fast


def test_warning_level_hides_start_and_completed_lines_but_not_failures(log_setup: None) -> None:
    stream = io.StringIO()
    setup_logging("WARNING", stream=stream)
    observer = JobLogObserver()
    assert observer.writer is not None
    observer.job_started("q", JOBS[0])
    observer.job_finished("q", JOBS[0], "completed", 1.0, None)
    observer.job_finished("q", JOBS[1], "failed", 1.0, ValueError("bad input"))
    observer.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "WARNING twenty_jobs.job: failed q NoWorkspace #2 attempt 2 in 1.0 ms: bad input" in lines[0]


def test_a_record_of_another_logger_comes_after_the_job_lines_before_it(log_setup: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    observer = JobLogObserver()
    observer.job_started("q", JOBS[0])
    logging.getLogger("twenty_jobs.redis").warning("Redis connection lost")
    observer.job_finished("q", JOBS[0], "completed", 1.0, None)
    observer.job_finished("q", JOBS[1], "retrying", 1.0, ValueError("again"))
    lines = stream.getvalue().splitlines()  # no flush: the records themselves wrote what waited
    assert [line.split(": ", 1)[1].split(" #")[0] for line in lines] == [
        "start q CallWebhookJob", "Redis connection lost", "completed q CallWebhookJob", "retrying q NoWorkspace",
    ]


async def test_buffered_lines_are_written_by_the_timer_alone(log_setup: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    observer = JobLogObserver()
    observer.job_started("q", JOBS[0])
    assert stream.getvalue() == ""
    await wait_until(lambda: "start q CallWebhookJob #1" in stream.getvalue(), timeout=5)


async def test_a_line_is_written_while_a_handler_blocks_the_event_loop(log_setup: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    observer = JobLogObserver()
    observer.job_started("q", JOBS[0])
    # What an async handler that never yields does: the loop's timer cannot run, the backstop can.
    deadline = time.monotonic() + 10
    while "start q CallWebhookJob #1" not in stream.getvalue():
        assert time.monotonic() < deadline, "the line was not written while the loop was blocked"
        time.sleep(0.05)  # noqa: ASYNC251 (blocking the loop is the point)


def test_lines_outside_an_event_loop_are_written_at_once(log_setup: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    JobLogObserver().job_started("q", JOBS[0])
    assert "start q CallWebhookJob #1" in stream.getvalue()


def test_another_handler_gets_the_job_lines_through_logging(log_setup: None) -> None:
    stream, other = io.StringIO(), io.StringIO()
    setup_logging("INFO", stream=stream)
    extra = logging.StreamHandler(other)
    logging.getLogger("twenty_jobs").addHandler(extra)
    try:
        observer = JobLogObserver()
        assert observer.writer is None
        observer.job_started("q", JOBS[0])
    finally:
        logging.getLogger("twenty_jobs").removeHandler(extra)
    assert "start q CallWebhookJob #1" in stream.getvalue()
    assert other.getvalue() == f"start q CallWebhookJob #1 attempt 1 [workspace={WORKSPACE}]\n"


async def test_each_write_holds_whole_lines_within_pipe_buf() -> None:
    # In an event loop, lines wait for the timer; this test writes them itself.
    writes: list[str] = []
    buffer = LineBuffer(writes.append, threading.RLock())
    ascii_lines = [f"line {i} {'x' * (i % 150)}\n" for i in range(400)] + ["long " * 1000 + "\n", "last\n"]
    wide_lines = ["wide ✓✓✓ 🚀\n"] * 300 + ["wider ✓✓✓ " * 200 + "\n", "last\n"]
    for lines in (ascii_lines, wide_lines):
        writes.clear()
        for line in lines:
            buffer.append(line)
        assert writes == []
        buffer.flush()
        assert "".join(writes) == "".join(lines)
        assert 2 < len(writes) < len(lines) / 5
        for text in writes:
            assert text.endswith("\n")
            assert len(text.encode()) <= PIPE_BUF or text.count("\n") == 1
    buffer.close()


def cli_worker(prefix: str, stderr: Any, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    env.pop("REDIS_QUEUE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", Q, "--import", "tests.job_log_handlers",
         "--no-builtin-jobs", "--prefix", prefix, "--concurrency", "10", *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
    )


async def all_finished(redis: aioredis.Redis, prefix: str, count: int) -> bool:
    finished = int(await redis.zcard(f"{prefix}:{Q}:completed")) + int(await redis.zcard(f"{prefix}:{Q}:failed"))
    return finished >= count


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_worker_stopped_right_after_n_jobs_has_written_all_their_lines(
    fmt: str, producer: Producer, redis: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    jobs = 300
    log_file = tmp_path / "worker.log"
    with log_file.open("wb") as stderr:
        proc = cli_worker(prefix, stderr, "--log-format", fmt)
        try:
            ids = [await producer.add(Q, "LogNoop", {"n": n}) for n in range(jobs)]
            boom = await producer.add(Q, "LogBoom", {"n": "last"})
            await wait_until(lambda: all_finished(redis, prefix, jobs + 1), timeout=60)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_file.read_text()
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        messages = [r["message"] for r in records if r["logger"] == "twenty_jobs.job"]
        assert all(r["queue"] == Q for r in records if r["logger"] == "twenty_jobs.job")
        last = records[-1]["message"]
    else:
        messages = [line.split("twenty_jobs.job: ", 1)[1] for line in text.splitlines() if "twenty_jobs.job: " in line]
        last = text.splitlines()[-1]
    assert "twenty-jobs worker stopped (exit code 0)" in last
    for job_id in ids:
        started = messages.index(f"start {Q} LogNoop #{job_id} attempt 1")
        assert any(m.startswith(f"completed {Q} LogNoop #{job_id} attempt 1 in ") for m in messages[started + 1:])
    # The handler that raised: its start line, then its failure (a WARNING, through logging).
    started = messages.index(f"start {Q} LogBoom #{boom} attempt 1")
    failed = rf"failed {Q} LogBoom #{boom} attempt 1 in [0-9.]+ ms: boom last"
    assert [m for m in messages[started + 1:] if re.fullmatch(failed, m)]
    assert len(messages) == 2 * (jobs + 1)


async def test_a_process_that_dies_of_an_exception_writes_every_job_line_before_the_traceback(
    producer: Producer, prefix: str
) -> None:
    jobs = 200
    ids = [await producer.add(Q, "LogNoop", {"n": n}) for n in range(jobs)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tests.job_log_driver", REDIS_URL, prefix, str(jobs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    before, _, after = proc.stderr.partition("Traceback (most recent call last)")
    assert f"DriverCrash: stopping on purpose after {jobs} jobs" in after
    assert "twenty_jobs.job" not in after
    for job_id in ids:
        assert f"twenty_jobs.job: start {Q} LogNoop #{job_id} attempt 1\n" in before
        assert f"twenty_jobs.job: completed {Q} LogNoop #{job_id} attempt 1 in " in before
