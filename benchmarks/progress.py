"""Measuring a worker from outside: poll its queue in Redis until every job is finished.

Every implementation (Node, the `twenty-jobs work` CLI, arq, saq) is measured the same way, so a
worker that cannot report on itself (a CLI run exactly as users run it) is measured like the
others. Every `poll_s` (2 ms) the benchmark counts the queue's unfinished jobs with one pipelined
round trip. The window opens at the first poll that sees a job finished and closes at the poll that
sees none left:

    throughput = jobs finished inside the window / window length
    worker CPU = CPU the worker's process tree spent inside the window (/proc, benchmarks/processes.py)

The ramp-up before the first completion (imports, connecting) is outside the window for every
implementation alike. Each poll costs Redis a few O(1) commands; the benchmark counts them and
takes them out of the commandstats it reports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from benchmarks.processes import WorkerProcess, cpu_between, rss_mb, tree_cpu

POLL_S = 0.002
# A run that makes no progress for this long has failed (a wedged worker, a wrong queue name).
STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class UnfinishedJobs:
    """How to count a queue's unfinished jobs: (command, key) pairs whose results add up. With
    `added_key` (a counter the producer increments per job, bullmq's job-id counter), finished =
    added - unfinished, so jobs may still be arriving (the latency probe); without it, every job
    must be in the queue before the worker starts."""

    commands: Sequence[tuple[str, str]]
    added_key: str | None = None

    def finished(self, client: redis.Redis, total: int) -> int:
        pipe = client.pipeline(transaction=False)
        if self.added_key is not None:
            pipe.get(self.added_key)
        for command, key in self.commands:
            getattr(pipe, command)(key)
        replies = pipe.execute()
        if self.added_key is not None:
            added, replies = int(replies[0] or 0), replies[1:]
        else:
            added = total
        return added - sum(int(x) for x in replies)

    def calls_per_poll(self) -> dict[str, int]:
        calls: dict[str, int] = {"get": 1} if self.added_key is not None else {}
        for command, _ in self.commands:
            calls[command] = calls.get(command, 0) + 1
        return calls


@dataclass
class Window:
    jobs: int = 0  # jobs finished inside the window
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    cpu_s_by_worker: list[float] = field(default_factory=list)  # one entry per worker process given
    finished_before: int = 0  # already finished when the window opened
    polls: int = 0
    own_calls: dict[str, int] = field(default_factory=dict)
    # (jobs finished, tree RSS in MB) at the thresholds asked for
    rss_samples: list[tuple[int, float]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.jobs / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def cpu_ms_per(self, units: float) -> float:
        return self.cpu_s * 1000 / units if units else float("nan")


def watch(
    client: redis.Redis,
    unfinished: UnfinishedJobs,
    total: int,
    workers: WorkerProcess | Sequence[WorkerProcess],
    *,
    rss_at: Sequence[int] = (),
    poll_s: float = POLL_S,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> Window:
    """Poll until `total` jobs are finished; raise if a worker dies or they stop making progress.
    With several worker processes, CPU and RSS are their sum."""
    group = [workers] if isinstance(workers, WorkerProcess) else list(workers)
    window = Window()
    pending_rss = sorted(rss_at)
    opened_at = 0.0
    cpu_start: list[dict[int, float]] = []
    last_finished = -1
    last_progress = time.monotonic()
    exited_seen = False
    while True:
        finished = unfinished.finished(client, total)
        now = time.perf_counter()
        window.polls += 1
        if finished != last_finished:
            last_finished, last_progress = finished, time.monotonic()
        while pending_rss and finished >= pending_rss[0]:
            window.rss_samples.append((finished, sum(rss_mb(w.pid) for w in group)))
            pending_rss.pop(0)
        if finished > 0 and not cpu_start:
            opened_at, cpu_start = now, [tree_cpu(w.pid) for w in group]
            window.finished_before = finished
        if finished >= total:
            window.cpu_s_by_worker = [cpu_between(start, tree_cpu(w.pid)) for start, w in zip(cpu_start, group,
                                                                                              strict=True)]
            window.cpu_s = sum(window.cpu_s_by_worker)
            window.elapsed_s = now - opened_at
            window.jobs = total - window.finished_before
            break
        if time.monotonic() - last_progress > stall_timeout_s:
            raise RuntimeError(f"no job finished for {stall_timeout_s:.0f} s ({finished} of {total} done)"
                               f"{group[0].log_tail()}")
        dead = [w for w in group if w.exited()]
        if dead:
            # It may have finished the last jobs and exited between two polls: look once more.
            if exited_seen:
                raise RuntimeError(f"{dead[0].name} exited after {finished} of {total} jobs{dead[0].log_tail()}")
            exited_seen = True
            continue
        time.sleep(poll_s)
    window.own_calls = {command: n * window.polls for command, n in unfinished.calls_per_poll().items()}
    return window
