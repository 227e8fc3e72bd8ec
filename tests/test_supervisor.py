"""The process supervisor behind `twenty-jobs work --processes N`: real child processes, real signals.

Most tests use a stand-in child (tests/supervisor_child.py) whose crashes and drains are scripted;
the last two run real `twenty-jobs work` children against the local Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from twenty_jobs.observability.heartbeat import read_heartbeats
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.supervisor import (
    RestartPolicy,
    available_cpus,
    child_argv_for,
    resolve_processes,
    shell_exit_code,
)
from twenty_jobs.wire.keys import queue_key

from .conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent
CHILD = REPO / "tests" / "supervisor_child.py"
DRIVER = REPO / "tests" / "supervisor_driver.py"
# The stand-in child learns its index from the port the supervisor gives it; nothing listens there.
BASE_PORT = 40000


class Supervised:
    """A supervisor process (tests/supervisor_driver.py) and the events its children recorded."""

    def __init__(self, proc: subprocess.Popen[str], record: Path, log: Path) -> None:
        self.proc = proc
        self.record = record
        self.log = log

    def events(self, kind: str | None = None) -> list[list[str]]:
        if not self.record.exists():
            return []
        rows = [line.split() for line in self.record.read_text().splitlines() if line]
        return [row for row in rows if kind is None or row[0] == kind]

    def wait_events(self, kind: str, count: int, timeout: float = 20) -> list[list[str]]:
        wait_for(lambda: len(self.events(kind)) >= count, timeout, f"{count} '{kind}' events: {self.events()}")
        return self.events(kind)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the supervisor; its exit code and log. (A file, not a pipe: children that
        outlive a failed test would hold a pipe open and hang the read.)"""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the supervisor did not exit within {timeout} s:\n{self.log.read_text()}") from None
        return code, self.log.read_text()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def supervise(child_argv: list[str], processes: int, record: Path, *driver_opts: str) -> Supervised:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = record.with_name(record.name + ".log")
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), "--processes", str(processes), *driver_opts, "--", *child_argv],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_file, text=True,
            # Its own session, so a test can signal the supervisor's process group the way a terminal does.
            start_new_session=True,
        )
    return Supervised(proc, record, log)


def stand_in(tmp_path: Path, processes: int, mode: str = "serve", *driver_opts: str,
             crash_index: int | None = None) -> Supervised:
    record = tmp_path / "record"
    child = [sys.executable, str(CHILD), str(record), "--metrics-port", str(BASE_PORT), "--base", str(BASE_PORT),
             "--mode", mode]
    if crash_index is not None:
        child += ["--crash-index", str(crash_index)]
    return supervise(child, processes, record, *driver_opts)


@pytest.fixture(autouse=True)
def reap_stand_ins(tmp_path: Path) -> Iterator[None]:
    """A failed test may leave stand-in children behind: kill those still running (checked by
    their command line, so a reused pid is never touched)."""
    yield
    record = tmp_path / "record"
    if not record.exists():
        return
    for row in (line.split() for line in record.read_text().splitlines()):
        if row and row[0] == "start":
            try:
                cmdline = Path(f"/proc/{row[2]}/cmdline").read_bytes()
            except OSError:
                continue
            if str(CHILD).encode() in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(row[2]), signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- pure parts ----------------------------------------------------------------------------------


def test_resolve_processes_accepts_a_count_or_auto() -> None:
    assert resolve_processes("3") == 3
    assert resolve_processes(" 1 ") == 1
    assert resolve_processes("auto") == resolve_processes("AUTO") == available_cpus() >= 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5", ""])
def test_resolve_processes_refuses_anything_else_in_one_line(bad: str) -> None:
    with pytest.raises(ValueError, match=r"--processes must be a whole number >= 1 or 'auto'") as info:
        resolve_processes(bad)
    assert "\n" not in str(info.value)


def test_child_i_gets_metrics_port_base_plus_i() -> None:
    argv = ["twenty-jobs", "work", "--metrics-port", "9464", "--queue", "q"]
    assert child_argv_for(argv, 0) == argv
    assert child_argv_for(argv, 2) == ["twenty-jobs", "work", "--metrics-port", "9466", "--queue", "q"]
    assert child_argv_for(["work", "--metrics-port=9464"], 1) == ["work", "--metrics-port=9465"]
    # Port 0 means "any free port" in every child; no port option, nothing to rewrite.
    assert child_argv_for(["work", "--metrics-port", "0"], 3) == ["work", "--metrics-port", "0"]
    assert child_argv_for(["work", "--burst"], 3) == ["work", "--burst"]


def test_a_metrics_base_port_too_high_for_n_processes_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="pick a base port at most 65533"):
        child_argv_for(["work", "--metrics-port", "65535"], 2)


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(initial_backoff_s=1, max_backoff_s=5)
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_death_by_signal_counts_as_128_plus_the_signal() -> None:
    assert shell_exit_code(-signal.SIGKILL) == 137
    assert shell_exit_code(1) == 1


# -- real child processes ------------------------------------------------------------------------


def test_starts_n_children_and_one_sigterm_drains_them_all_to_exit_0(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 3)
    starts = sup.wait_events("start", 3)
    assert sorted(row[1] for row in starts) == ["0", "1", "2"]  # each got its own metrics port
    sup.proc.send_signal(signal.SIGTERM)
    code, err = sup.finish()
    assert code == 0, err
    assert sorted(row[1] for row in sup.events("term")) == ["0", "1", "2"]
    assert sup.events("force") == [] and len(sup.events("start")) == 3
    assert "SIGTERM received: asking 3 worker process(es) to finish their active jobs" in err


def test_ctrl_c_in_a_terminal_reaches_each_child_once_so_they_drain(tmp_path: Path) -> None:
    """A terminal sends SIGINT to its whole foreground process group. Children in that group would
    get it twice (directly and forwarded), and a second signal means 'stop now'."""
    sup = stand_in(tmp_path, 2, "slow-drain", "--grace", "60")
    sup.wait_events("start", 2)
    os.killpg(sup.proc.pid, signal.SIGINT)
    sup.wait_events("term", 2)
    time.sleep(0.5)
    assert sup.events("force") == []
    sup.proc.send_signal(signal.SIGTERM)
    code, _ = sup.finish()
    assert code == 1  # the second signal forced the slow drains


def test_a_second_signal_is_forwarded_and_forces_the_children_to_stop(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 2, "slow-drain", "--grace", "60")
    sup.wait_events("start", 2)
    sup.proc.send_signal(signal.SIGTERM)
    sup.wait_events("term", 2)
    sup.proc.send_signal(signal.SIGTERM)
    code, err = sup.finish(timeout=15)
    assert code == 1, err
    assert sorted(row[1] for row in sup.events("force")) == ["0", "1"]
    assert "SIGTERM received again: telling the worker processes to stop now" in err


def test_a_crashed_child_is_restarted_and_the_others_keep_running(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 2, "crash-once")
    sup.wait_events("start", 3)
    assert (tmp_path / "record.crashed").exists()
    time.sleep(0.3)
    assert len(sup.events("start")) == 3  # one restart, nothing else
    pids = {row[2] for row in sup.events("start")}
    assert len(pids) == 3
    sup.proc.send_signal(signal.SIGTERM)
    code, err = sup.finish()
    assert code == 0, err
    assert "exited with code 3; restarting it in 0.1 s" in err
    assert "restarted (pid" in err


def test_restarts_back_off_exponentially(tmp_path: Path) -> None:
    # Backoff 0.2 s doubling: restarts at least 0.2, 0.4 and 0.8 s after each crash.
    sup = stand_in(tmp_path, 1, "crash", "--backoff", "0.2", "--crash-limit", "4")
    code, err = sup.finish()
    starts = [float(row[3]) for row in sup.events("start")]
    assert len(starts) == 4, err
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Lower bounds only (a restart is never early); each gap also holds the child's own run time.
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8, gaps
    assert code == 1


def test_a_crash_looping_child_makes_it_give_up_loudly_and_stop_the_others(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 2, "serve", "--backoff", "0.05", "--crash-limit", "3", crash_index=1)
    code, err = sup.finish()
    assert code == 1
    give_up = [line for line in err.splitlines() if "giving up" in line]
    assert len(give_up) == 1, err
    assert "worker process 1 is crash looping: it crashed 3 times within 60 s (last: exited with code 3)" in give_up[0]
    assert "ERROR" in give_up[0]
    assert [row[1] for row in sup.events("start")].count("1") == 3
    assert [row[1] for row in sup.events("term")] == ["0"]  # the healthy child was drained, not killed


def test_bad_configuration_is_not_restarted_and_exits_2(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 2, "config")
    code, err = sup.finish()
    assert code == 2, err
    # At most one run each (the second may be stopped before it records its start).
    assert len(sup.events("start")) <= 2
    assert "bad arguments or configuration" in err and "restarting it in" not in err


def test_a_child_that_ignores_the_stop_signal_is_killed_after_the_drain_bound(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 1, "hang", "--grace", "0.5", "--margin", "0.5")
    sup.wait_events("start", 1)
    started = time.monotonic()
    sup.proc.send_signal(signal.SIGTERM)
    code, err = sup.finish()
    assert code == 128 + signal.SIGKILL
    assert time.monotonic() - started >= 1.0
    assert sup.events("term-ignored") and "still running 1 s after the stop request: killing it" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_are_stopped_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    sup = stand_in(tmp_path, 2)
    pids = [int(row[2]) for row in sup.wait_events("start", 2)]
    sup.proc.kill()
    sup.finish()
    sup.wait_events("term", 2, timeout=10)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 10, "the orphaned children to exit")


def test_an_unstartable_command_is_one_error_and_exit_2(tmp_path: Path) -> None:
    sup = supervise([str(tmp_path / "no-such-program")], 2, tmp_path / "record")
    code, err = sup.finish()
    assert code == 2
    assert "cannot start worker process 0" in err and "No such file or directory" in err
    assert "Traceback" not in err


# -- real `twenty-jobs work` children -----------------------------------------------------------


def work_argv(prefix: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "twenty_jobs.cli", "work", "--import", "tests.cli_handlers", "--no-builtin-jobs",
        "--queue", "workspace-queue", "--prefix", prefix, "--redis-url", REDIS_URL, "--concurrency", "4",
        "--log-level", "WARNING", *extra,
    ]


def two_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return int(base)
    raise AssertionError("no two consecutive free ports")


async def state_count(redis: aioredis.Redis, prefix: str, state: str) -> int:
    return int(await redis.zcard(queue_key(prefix, "workspace-queue", state)))


async def test_burst_children_finish_every_job_and_the_supervisor_exits_0(
    tmp_path: Path, prefix: str, producer: Producer, redis: aioredis.Redis
) -> None:
    await producer.add_bulk("workspace-queue", "Echo", [{"n": i} for i in range(200)])
    sup = supervise(work_argv(prefix, "--burst"), 2, tmp_path / "unused")
    code, err = await asyncio.to_thread(sup.finish, 90)
    assert code == 0, err
    assert await state_count(redis, prefix, "completed") == 200
    assert await state_count(redis, prefix, "failed") == 0


async def test_each_real_worker_serves_healthz_on_its_own_port_and_sigterm_drains_them(
    tmp_path: Path, prefix: str, producer: Producer, redis: aioredis.Redis
) -> None:
    base = two_free_ports()
    sup = supervise(
        work_argv(prefix, "--metrics-port", str(base), "--metrics-host", "127.0.0.1"), 2, tmp_path / "unused"
    )
    try:
        async with httpx.AsyncClient() as client:
            for port in (base, base + 1):
                for _ in range(200):
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"no /healthz on port {port}")
        await producer.add_bulk("workspace-queue", "Echo", [{"n": i} for i in range(100)])
        for _ in range(400):
            if await state_count(redis, prefix, "completed") == 100:
                break
            await asyncio.sleep(0.05)
        pids = {record.pid for record in await read_heartbeats(redis, prefix)}
        assert len(pids) == 2
    finally:
        sup.proc.send_signal(signal.SIGTERM)
        code, err = await asyncio.to_thread(sup.finish, 60)
    assert code == 0, err
    assert await state_count(redis, prefix, "completed") == 100
    assert await read_heartbeats(redis, prefix) == []  # a clean stop removes each heartbeat


async def test_work_processes_runs_that_many_workers_and_drains_the_queue(
    prefix: str, producer: Producer, redis: aioredis.Redis
) -> None:
    """`twenty-jobs work --processes 2 --burst`: two worker processes each start and stop (their
    start and last lines), every job is done once, exit 0."""
    await producer.add_bulk("workspace-queue", "Echo", [{"n": i} for i in range(300)])
    argv = [*work_argv(prefix, "--burst", "--processes", "2"), "--log-level", "INFO"]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    log = err.decode()
    assert proc.returncode == 0, log
    assert "starting 2 worker processes" in log
    assert log.count("worker stopped (exit code 0)") == 2, log
    assert await state_count(redis, prefix, "completed") == 300
    assert await state_count(redis, prefix, "failed") == 0


def test_work_processes_refuses_a_bad_count_in_one_line() -> None:
    proc = subprocess.run([*work_argv("p"), "--processes", "zero"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "processes" in lines[0], proc.stderr
