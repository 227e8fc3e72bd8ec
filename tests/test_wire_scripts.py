"""wire/scripts builds every script call exactly as the BullMQ port's own `Scripts` class does
(the port's Lua is Node 6.4's, and its Python arg builders are the reference here): keys and
arguments compared byte for byte, with the clock fixed. Plus the error codes and the fetch
reply."""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from bullmq.job import Job as PortJob
from bullmq.scripts import Scripts as PortScripts

from twenty_jobs.wire.job import keep_jobs
from twenty_jobs.wire.keys import QueueKeys
from twenty_jobs.wire.lua import FINITE_PRIORITY, GUARDED_READS, LuaScript, guard, script
from twenty_jobs.wire.scripts import errors, queue, worker
from twenty_jobs.wire.scripts.worker import Limiter, ParentFlags, WorkerScripts

PREFIX, Q = "bull", "webhook-queue"
NOW = 1_700_000_000.1234


class Captured:
    """Stands in for the port's registered commands and for our ScriptRunner: records calls."""

    def __init__(self, reply: Any = 0) -> None:
        self.reply = reply
        self.calls: list[tuple[str, list[Any], list[Any]]] = []

    def __getitem__(self, name: str) -> Any:
        async def command(keys: Any = None, args: Any = None, client: Any = None) -> Any:
            self.calls.append((name, list(keys), list(args or [])))
            return self.reply

        return command

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        lua.check_keys(keys)
        self.calls.append((lua.name, list(keys), list(args)))
        return self.reply

    async def call(self, *args: Any) -> Any:
        self.calls.append((str(args[0]), [], list(args[1:])))
        return None


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)


def port_scripts(reply: Any = 0) -> tuple[PortScripts, Captured]:
    captured = Captured(reply)
    return PortScripts(PREFIX, Q, SimpleNamespace(conn=None, commands=captured)), captured  # type: ignore[arg-type]


WORKER_OPTS = {"lockDuration": 30_000, "limiter": {"max": 5, "duration": 1000}, "metrics": {"maxDataPoints": 10_080}}


def ours(reply: Any = 0) -> tuple[WorkerScripts, Captured]:
    scripts = WorkerScripts(QueueKeys(PREFIX, Q), lock_duration_ms=30_000, limiter=Limiter(5, 1000),
                            max_metrics_points=10_080)
    return scripts, Captured(reply)


def port_job(job_id: str, *, attempts: int = 3, attempts_made: int = 2, opts: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(id=job_id, attempts=attempts, attemptsMade=attempts_made, opts=opts or {},
                           queue=SimpleNamespace(opts=WORKER_OPTS))


async def test_move_to_active_is_the_ports() -> None:
    port, expected = port_scripts()
    await port.moveToActive("tok:1", WORKER_OPTS)
    scripts, got = ours()
    await scripts.move_to_active(got, "tok:1")
    assert got.calls == expected.calls


@pytest.mark.parametrize("keep", [{"age": 14400, "count": 1000}, True, 5, False, {}])
@pytest.mark.parametrize("fetch_next", [True, False])
def test_completing_is_the_ports_move_to_completed(keep: Any, fetch_next: bool) -> None:
    port, _ = port_scripts()
    value = {"a": [1, "é"], "n": None}
    opts = {"failParentOnFailure": True}
    expected = port.moveToCompletedArgs(port_job("77", opts=opts), value, keep, "tok:1", fetch_next)
    scripts, _ = ours()
    built = scripts.finish_args("77", "tok:1", target="completed", value=json.dumps(value, separators=(",", ":")),
                                keep=keep_jobs(keep), attempts=3, attempts_made=2,
                                parent=ParentFlags(fail_parent=True), fetch_next=fetch_next)
    assert built == (expected[0], expected[1])


def test_failing_is_the_ports_move_to_failed_with_fields() -> None:
    port, _ = port_scripts()
    fields = {"failedReason": "boom", "stacktrace": '["Error: boom"]'}
    expected = port.moveToFailedArgs(port_job("9"), "boom", {"count": 10}, "tok:2", True, fields)
    scripts, _ = ours()
    built = scripts.finish_args("9", "tok:2", target="failed", value="boom", keep={"count": 10}, attempts=3,
                                attempts_made=2, fetch_next=True, fields=fields)
    assert built == (expected[0], expected[1])


async def test_retry_delay_locks_and_stalled_check_are_the_ports() -> None:
    fields = {"failedReason": "x", "stacktrace": "[]"}
    port, expected = port_scripts()
    await port.retryJob("5", False, "tok:3", {"fieldsToUpdate": fields})
    await port.moveToDelayed("5", round(NOW * 1000), 400, "tok:3",
                             {"fieldsToUpdate": fields, "fetchNext": True, "workerOpts": WORKER_OPTS})
    await port.extendJobLocks(["5", "6"], ["tok:3", "tok:4"], 30_000)
    await port.moveStalledJobsToWait(1, 30_000)
    scripts, got = ours()
    await scripts.retry(got, "5", "tok:3", lifo=False, fields=fields)
    await scripts.move_to_delayed(got, "5", "tok:3", delay_ms=400, fields=fields, fetch_next=True)
    await scripts.extend_locks(got, ["5", "6"], ["tok:3", "tok:4"])
    await scripts.move_stalled_jobs_to_wait(got, max_stalled_count=1, stalled_interval_ms=30_000)
    assert [c[0] for c in got.calls] == ["retryJob", "moveToDelayed", "extendLocks", "moveStalledJobsToWait"]
    assert got.calls == [(name.replace("extendJobLocks", "extendLocks"), k, a) for name, k, a in expected.calls]


async def test_progress_and_data_updates_are_the_ports() -> None:
    port, expected = port_scripts()
    await port.updateProgress("5", {"p": 50})
    await port.updateData("5", {"d": 1})
    scripts, got = ours()
    await scripts.update_progress(got, "5", '{"p":50}')
    await scripts.update_data(got, "5", '{"d":1}')
    assert got.calls == expected.calls


@pytest.mark.parametrize("opts", [
    {"jobId": "abc-1", "priority": 2, "attempts": 3, "removeOnComplete": {"age": 14400, "count": 1000}},
    {"attempts": 1, "backoff": 250},
    {"delay": 700, "priority": 5, "backoff": {"type": "exponential", "delay": 100, "jitter": 0.5}},
    {"keepLogs": 10, "deduplication": {"id": "d1", "ttl": 100}},
])
async def test_adding_a_job_is_the_ports_add_job(opts: dict[str, Any]) -> None:
    port, expected = port_scripts(reply="1")
    port_queue = SimpleNamespace(backend=None, qualifiedName=f"{PREFIX}:{Q}")
    job = PortJob(port_queue, "SomeJob", {"x": [1, 2]}, opts)
    await port.addJob(job)
    lua, keys, args = queue.add_job_call(QueueKeys(PREFIX, Q), queue.NewJob("SomeJob", {"x": [1, 2]}, opts,
                                                                            timestamp=job.timestamp))
    name, port_keys, port_args = expected.calls[0]
    assert (lua.name, keys) == (name, port_keys)
    # ARGV[4] (a timestamp the port appends) is read by no add script.
    assert args == port_args[:3]
    assert msgpack.unpackb(args[0])[8] == (f"{PREFIX}:{Q}:de:d1" if "deduplication" in opts else None)


async def test_queue_control_calls_are_the_ports() -> None:
    keys = QueueKeys(PREFIX, Q)
    port, expected = port_scripts(reply=[0, 0])
    await port.getCounts(["waiting", "failed"])
    await port.drain(True)
    await port.retryJobs("failed", 100, 1234)
    await port.cleanJobsInSet("failed", 5000, 50)
    await port.reprocessJob(SimpleNamespace(id="5", opts={}), "failed")
    got = Captured(reply=[0, 0])
    await queue.get_counts(got, keys, ["waiting", "failed"])
    await queue.drain(got, keys, delayed=True)
    await queue.move_jobs_to_wait(got, keys, "failed", count=100, timestamp=1234)
    await queue.clean_jobs_in_set(got, keys, "failed", grace_ms=5000, limit=50)
    got.reply = 1
    await queue.reprocess_job(got, keys, "5", "failed")
    assert got.calls == [(n.replace("retryJobs", "moveJobsToWait"), k, a) for n, k, a in expected.calls]


async def test_pause_and_resume_use_the_ports_keys() -> None:
    keys = QueueKeys(PREFIX, Q)
    port, expected = port_scripts()
    await port.pause(True)
    await port.pause(False)
    got = Captured()
    await queue.pause(got, keys)
    await queue.resume(got, keys)
    assert [(n, k) for n, k, _ in got.calls] == [(n, k) for n, k, _ in expected.calls]
    assert [a[0] for _, _, a in got.calls] == ["paused", "resumed"]


def test_negative_codes_become_errors_that_name_the_script_and_job() -> None:
    with pytest.raises(errors.LockMissing, match=r"moveToFinished for job 7 refused \(code -2\).*lock"):
        errors.check_reply(-2, "moveToFinished", "7")
    with pytest.raises(errors.ScriptError, match="code -99"):
        errors.check_reply(-99, "x")
    assert errors.check_reply([1], "x") == [1]
    assert errors.check_reply(0, "x") == 0


def test_a_fetch_reply_is_read_into_a_job_or_the_reason_there_is_none() -> None:
    got = worker.parse_fetch([["name", "N", "data", "{}"], "12", 0, 0])
    assert got.job is not None and (got.job.id, got.job.fields) == ("12", {"name": "N", "data": "{}"})
    limited = worker.parse_fetch([0, 0, 850, 0])
    assert (limited.job, limited.rate_limited_ms, limited.next_delayed_at) == (None, 850, 0)
    assert worker.parse_fetch([0, 0, 0, 1_700_000_000_500.0]).next_delayed_at == 1_700_000_000_500
    assert worker.parse_fetch(0) is worker.NOTHING


# The guards on the shipped Lua (wire/lua.py): each applies where the scripts the worker runs read a
# job's priority or count its starts, and changes nothing else. A port upgrade that rewrites those
# lines fails here instead of silently dropping a guard.
GUARDED = {
    "moveToActive": ["finitePriority(rcall", 'redis.pcall("HINCRBY", jobKey, "ats", 1)'],
    "moveToFinished": ["finitePriority(rcall", "finitePriority(jobAttributes[1])",
                       'redis.pcall("HINCRBY", jobKey, "ats", 1)'],
    "moveToDelayed": ["finitePriority(rcall", 'redis.pcall("HINCRBY", jobKey, "ats", 1)'],
    "retryJob": ["finitePriority(rcall"],
}


@pytest.mark.parametrize("name", sorted(GUARDED))
def test_the_guards_apply_to_every_script_that_promotes_or_fetches(name: str) -> None:
    text = script(name).text
    for guarded in GUARDED[name]:
        assert guarded in text, (name, guarded)
    assert not any(read in text for read, _ in GUARDED_READS)
    original = resources.files("bullmq").joinpath("commands", f"{name}-{script(name).number_of_keys}.lua")
    shipped = original.read_text(encoding="utf-8")
    # Undoing the replacements (and the helper) gives the shipped text back: nothing else changed.
    undone = text
    for read, guarded_read in GUARDED_READS:
        undone = undone.replace(guarded_read, read)
    assert undone.removeprefix(FINITE_PRIORITY) == shipped and guard(shipped) == text


async def test_a_nan_priority_reads_as_zero_in_the_guarded_lua(redis: Any) -> None:
    probe = FINITE_PRIORITY + "return {tostring(finitePriority(ARGV[1])), tostring(finitePriority(ARGV[2]) or 0)}"
    assert await redis.eval(probe, 0, "7", "NaN") == ["7", "0"]
