"""Default job options of a queue, as a Node BullMQ app sets them on its `Queue`
(`new Queue(name, {defaultJobOptions: {attempts, backoff, removeOnComplete, removeOnFail}})`):
`Producer.add` / `add_bulk` and `twenty-jobs enqueue` apply them to every job of that queue that
does not say otherwise (docs/any-bullmq-app.md, "Default job options").

Declared with `twenty_jobs.queue_settings(queue, job_defaults=JobDefaults(...))`
(runtime/queue_options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twenty_jobs.errors import ConfigError
from twenty_jobs.twenty.options import Backoff


@dataclass(frozen=True, slots=True)
class KeepJobs:
    """BullMQ's `{count, age}` retention (`removeOnComplete` / `removeOnFail`): keep at most the
    last `count` jobs, and none older than `age_s` seconds; None leaves that bound out."""

    count: int | None = None
    age_s: int | None = None

    def __post_init__(self) -> None:
        if self.count is None and self.age_s is None:
            raise ConfigError("KeepJobs needs count= or age_s= (use True to remove at once, False to keep all)")
        for name, value in (("count", self.count), ("age_s", self.age_s)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"KeepJobs {name} must be a whole number >= 0, got {value!r}")

    def to_bullmq(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.count is not None:
            out["count"] = self.count
        if self.age_s is not None:
            out["age"] = self.age_s
        return out


JobRetention = KeepJobs | bool | int


def retention_option(value: JobRetention) -> bool | int | dict[str, int]:
    """`removeOnComplete` / `removeOnFail` as BullMQ stores it."""
    if isinstance(value, KeepJobs):
        return value.to_bullmq()
    if isinstance(value, bool):
        return value
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"a retention must be True, False, a count >= 0 or KeepJobs(...), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CustomBackoff:
    """A retry backoff by the name of a strategy the workers register (Node: `backoff: {type:
    'custom', delay}` with the Worker's `settings.backoffStrategy`; here
    `queue_settings(queue, backoff_strategies={"custom": fn})`)."""

    type: str
    delay_ms: int = 0

    def to_bullmq(self) -> dict[str, Any]:
        return {"type": self.type, "delay": self.delay_ms}


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """A queue's `defaultJobOptions`. `attempts` counts the first run (Node's meaning; Twenty's
    `retry_limit` is `attempts - 1`). None leaves an option to the add call."""

    attempts: int | None = None
    backoff: Backoff | CustomBackoff | None = None
    remove_on_complete: JobRetention | None = None
    remove_on_fail: JobRetention | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and (isinstance(self.attempts, bool) or not isinstance(self.attempts, int)
                                          or self.attempts < 1):
            raise ConfigError(f"JobDefaults attempts must be a whole number >= 1, got {self.attempts!r}")
        for value in (self.remove_on_complete, self.remove_on_fail):
            if value is not None:
                retention_option(value)

    def applied_to(self, opts: dict[str, Any], *, attempts_given: bool, backoff_given: bool) -> dict[str, Any]:
        """`opts` (what the add call built) with these defaults where the call gave nothing."""
        out = dict(opts)
        if self.attempts is not None and not attempts_given:
            out["attempts"] = self.attempts
        if self.backoff is not None and not backoff_given:
            out["backoff"] = self.backoff.to_bullmq()
        if self.remove_on_complete is not None:
            out["removeOnComplete"] = retention_option(self.remove_on_complete)
        if self.remove_on_fail is not None:
            out["removeOnFail"] = retention_option(self.remove_on_fail)
        return out
