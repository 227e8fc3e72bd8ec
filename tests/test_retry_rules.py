"""The decision after a failed attempt (Node's shouldRetryJob and Backoffs) and the failure as it
is stored (Node's shape), without Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from twenty_jobs.errors import PermanentJobError, RetryJob
from twenty_jobs.runtime.failures import WorkerFailure, failed_reason, stack_entry, stacktrace_json
from twenty_jobs.runtime.retry import MAX_DELAY_MS, RetryPlan, plan_retry
from twenty_jobs.wire.job import JobRecord, parse_job_hash


def job(opts: dict[str, Any], attempts_made: int = 0) -> JobRecord:
    return parse_job_hash("1", {"name": "J", "opts": json.dumps(opts), "atm": str(attempts_made)})


async def test_attempts_left_decide_between_retrying_and_failing() -> None:
    assert await plan_retry(job({"attempts": 3}), ValueError(), {}) == RetryPlan(True, 0)
    assert await plan_retry(job({"attempts": 3}, 2), ValueError(), {}) == RetryPlan(False)
    assert await plan_retry(job({}), ValueError(), {}) == RetryPlan(False)
    assert await plan_retry(job({"attempts": 3}), PermanentJobError("no"), {}) == RetryPlan(False)
    assert await plan_retry(job({"attempts": 3}), RetryJob("later", delay_ms=400), {}) == RetryPlan(True, 400)


async def test_fixed_and_exponential_backoff_follow_nodes_formulas() -> None:
    fixed = job({"attempts": 5, "backoff": 250})
    assert await plan_retry(fixed, ValueError(), {}) == RetryPlan(True, 250)
    expo = {"attempts": 9, "backoff": {"type": "exponential", "delay": 100}}
    assert [(await plan_retry(job(expo, n), ValueError(), {})).delay_ms for n in range(4)] == [100, 200, 400, 800]
    huge = job({"attempts": 1_000_000, "backoff": {"type": "exponential", "delay": 1000}}, 900_000)
    assert (await plan_retry(huge, ValueError(), {})).delay_ms == MAX_DELAY_MS


async def test_jitter_draws_from_nodes_range() -> None:
    jittered = job({"attempts": 9, "backoff": {"type": "exponential", "delay": 400, "jitter": 0.5}}, 1)
    delays = {(await plan_retry(jittered, ValueError(), {})).delay_ms for _ in range(200)}
    assert min(delays) >= 400 and max(delays) <= 800 and len(delays) > 20


async def test_custom_strategies_are_found_by_name_and_may_refuse_or_break() -> None:
    custom = job({"attempts": 5, "backoff": {"type": "mine"}}, 1)

    async def later(attempt: int, kind: str, error: BaseException, record: JobRecord) -> int:
        return attempt * 1000

    assert await plan_retry(custom, ValueError(), {"mine": later}) == RetryPlan(True, 2000)
    assert await plan_retry(custom, ValueError(), {"mine": lambda *a: -1}) == RetryPlan(False)

    def broken(*args: Any) -> int:
        raise ZeroDivisionError("oops")

    plan = await plan_retry(custom, ValueError(), {"mine": broken})
    assert not plan.retry and plan.note == "not retried: backoff strategy 'mine' raised ZeroDivisionError: oops"
    plan = await plan_retry(custom, ValueError(), {"mine": lambda *a: "soon"})
    assert not plan.retry and "returned 'soon'" in (plan.note or "")
    plan = await plan_retry(custom, ValueError(), {"other": later})
    assert not plan.retry and "'opts.backoff.type'" in (plan.note or "") and "fixed, exponential, other" in (
        plan.note or "")


def test_a_stack_entry_starts_with_the_error_line_and_keeps_the_callers_frames() -> None:
    def handler() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError) as caught:
        handler()
    entry = stack_entry(caught.value)
    first, *frames = entry.split("\n")
    assert first == "ValueError: bad input"
    assert frames[-2].endswith(", in handler") and frames[-1].strip() == 'raise ValueError("bad input")'
    assert stack_entry(WorkerFailure("no handler for job 'X'")) == "WorkerFailure: no handler for job 'X'"
    assert failed_reason(RuntimeError()) == "RuntimeError"


def test_the_stack_trace_list_keeps_the_last_stack_trace_limit_entries() -> None:
    error = WorkerFailure("x")
    assert json.loads(stacktrace_json(["a", "b"], error, None)) == ["a", "b", "WorkerFailure: x"]
    assert json.loads(stacktrace_json(["a", "b"], error, 2)) == ["b", "WorkerFailure: x"]
    assert json.loads(stacktrace_json(["a"], error, 0)) == []
