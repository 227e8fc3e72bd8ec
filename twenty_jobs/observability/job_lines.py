"""The two per-job log lines, rendered and written without the `logging` machinery
(docs/job-logs.md).

A LogRecord, its formatting and a write per line cost 10-25 µs per line, more than the rest of
the worker's work on a job. `TextJobLines`/`JsonJobLines` render the very line that the CLI's
formatter would render for the record `JobLogObserver` logs (runtime/events.py; the same
messages, checked equal by tests/test_job_logs.py), with the start of the line made once per
millisecond. `LineBuffer` keeps the lines and writes them together: at most 50 ms later (1 s
while a handler blocks the event loop), when many are waiting, before any other log record (see
observability/logs.py), when the worker stops, and at exit. Each write holds whole lines and at
most PIPE_BUF bytes, so the lines of several worker processes sharing one pipe (`--processes`, a
container's stderr) never interleave mid-line.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twenty_jobs.wire.job import JobRecord

# A write to a pipe of at most this many bytes is never interleaved with other writers' (POSIX).
PIPE_BUF = 4096
# How long a job line may wait in the buffer while the event loop runs; at most this much is lost if
# the process is killed.
FLUSH_INTERVAL_S = 0.05
# How long at most while a handler blocks the event loop.
BACKSTOP_INTERVAL_S = 1.0
# Written at once, without waiting for the flusher, when this many lines are waiting (bounds the
# memory, and makes a slow log destination slow the worker down as unbuffered lines did).
MAX_BUFFERED_LINES = 4096
# The level both lines are logged at (a job's other outcomes are WARNING and go through logging).
LEVEL_NAME = "INFO"


class _Stamped:
    """The start of a line up to the message, made once per millisecond (its date part once per
    second): a clock reading and a comparison per line otherwise."""

    __slots__ = ("_date", "_ms", "_second", "_stamp")

    def __init__(self) -> None:
        self._ms = self._second = -1
        self._date = self._stamp = ""

    def _restamp(self, ms: int) -> str:
        second = ms // 1000
        if second != self._second:
            self._date = self._date_of(second)
            self._second = second
        self._stamp = self._stamp_of(self._date, ms % 1000)
        self._ms = ms
        return self._stamp

    def _date_of(self, second: int) -> str:
        raise NotImplementedError

    def _stamp_of(self, date: str, ms: int) -> str:
        raise NotImplementedError


# The messages below are runtime/events.py's STARTED_MESSAGE and FINISHED_MESSAGE (for
# "completed", no error) spelled out as f-strings, which render in half the time of `%`.


class TextJobLines(_Stamped):
    """Lines as `logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")` renders
    the job's INFO records (observability/logs.py, TEXT_FORMAT)."""

    __slots__ = ("_head",)

    def __init__(self, logger_name: str) -> None:
        super().__init__()
        self._head = f" {LEVEL_NAME:<7} {logger_name}: "

    def _date_of(self, second: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))  # asctime: local time

    def _stamp_of(self, date: str, ms: int) -> str:
        return f"{date},{ms:03d}{self._head}"  # then ",<ms>" (logging's default_msec_format)

    def started(self, queue: str, job: JobRecord) -> str:
        ms = time.time_ns() // 1_000_000
        ws = job.workspace_id
        return (f"{self._stamp if ms == self._ms else self._restamp(ms)}start {queue} {job.name} #{job.id} "
                f"attempt {job.attempts_made + 1}{f' [workspace={ws}]' if ws else ''}\n")

    def completed(self, queue: str, job: JobRecord, duration_ms: float) -> str:
        ms = time.time_ns() // 1_000_000
        ws = job.workspace_id
        return (f"{self._stamp if ms == self._ms else self._restamp(ms)}completed {queue} {job.name} #{job.id} "
                f"attempt {job.attempts_made} in {duration_ms:.1f} ms{f' [workspace={ws}]' if ws else ''}\n")


class JsonJobLines(_Stamped):
    """Lines as observability/logs.py's `JsonFormatter` renders the job's INFO records: the same
    keys in the same order, strings escaped by the same encoder as `json.dumps(ensure_ascii=False)`."""

    __slots__ = ("_head",)

    def __init__(self, logger_name: str) -> None:
        super().__init__()
        self._head = f'", "level": "{LEVEL_NAME.lower()}", "logger": {encode_basestring(logger_name)}, "message": '

    def _date_of(self, second: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))  # ts: UTC

    def _stamp_of(self, date: str, ms: int) -> str:
        return f'{{"ts": "{date}.{ms:03d}Z{self._head}'

    def started(self, queue: str, job: JobRecord) -> str:
        ms = time.time_ns() // 1_000_000
        ws = job.workspace_id
        attempt = job.attempts_made + 1
        message = f"start {queue} {job.name} #{job.id} attempt {attempt}{f' [workspace={ws}]' if ws else ''}"
        return (f"{self._stamp if ms == self._ms else self._restamp(ms)}{encode_basestring(message)}, "
                f'{_job_fields(queue, job)}, "attempt": {attempt}}}\n')

    def completed(self, queue: str, job: JobRecord, duration_ms: float) -> str:
        ms = time.time_ns() // 1_000_000
        ws = job.workspace_id
        message = (f"completed {queue} {job.name} #{job.id} attempt {job.attempts_made} in {duration_ms:.1f} ms"
                   f"{f' [workspace={ws}]' if ws else ''}")
        # json.dumps writes floats with float.__repr__, as here.
        return (f"{self._stamp if ms == self._ms else self._restamp(ms)}{encode_basestring(message)}, "
                f'{_job_fields(queue, job)}, "attempt": {job.attempts_made}, '
                f'"duration_ms": {round(duration_ms, 3)!r}, "outcome": "completed"}}\n')


def _job_fields(queue: str, job: JobRecord) -> str:
    workspace = job.workspace_id
    return (f'"queue": {encode_basestring(queue)}, "job_name": {encode_basestring(job.name)}, '
            f'"job_id": {encode_basestring(job.id)}, '
            f'"workspace_id": {"null" if workspace is None else encode_basestring(workspace)}')


class LineBuffer:
    """Lines waiting to be written by `write`, which is called with the handler's `lock` held (the
    lock that also guards the handler's own writes, so lines never interleave with other records).

    The lines are written `interval_s` after the first of them by a timer on the event loop that
    appended it: the worker's own thread, so the hot path never hands the GIL to another thread
    (a flusher thread woken for every write cost the worker more than the lines themselves on a
    busy machine). A backstop thread writes what waits every `backstop_s`, for a loop that a
    handler blocks or that is gone; lines appended outside an event loop, or when `max_lines`
    wait, are written at once."""

    def __init__(
        self,
        write: Callable[[str], None],
        lock: threading.RLock,
        *,
        interval_s: float = FLUSH_INTERVAL_S,
        backstop_s: float = BACKSTOP_INTERVAL_S,
        max_lines: int = MAX_BUFFERED_LINES,
    ) -> None:
        self._write = write
        self._lock = lock
        self._interval_s = interval_s
        self._backstop_s = backstop_s
        self._max_lines = max_lines
        # Appended to without a lock: list.append is atomic, and `flush` takes exactly the lines it
        # has seen (lines[:n], del lines[:n]), so a line appended meanwhile stays for the next flush.
        self._lines: list[str] = []
        self._backstop: threading.Thread | None = None
        self._closed = threading.Event()
        _BUFFERS.add(self)

    def append(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        waiting = len(lines)
        if waiting == 1:
            self._schedule_flush()
        elif waiting >= self._max_lines:
            self.flush()

    def flush(self) -> None:
        """Write every waiting line now."""
        with self._lock:
            lines = self._lines
            count = len(lines)
            if not count:
                return
            text = "".join(lines[:count])
            del lines[:count]
            # Pieces of whole lines within PIPE_BUF bytes (UTF-8 takes at most 4 bytes a character;
            # str.isascii is a flag, not a scan).
            budget = PIPE_BUF if text.isascii() else PIPE_BUF // 4
            start, end = 0, len(text)
            while start < end:
                cut = text.rfind("\n", start, start + budget) + 1
                if cut <= start:  # one line longer than the budget: written alone
                    cut = text.find("\n", start + budget) + 1 or end
                self._write(text[start:cut])
                start = cut

    def close(self) -> None:
        """Write what is waiting and stop the backstop thread."""
        self._closed.set()
        self.flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no event loop to time the write
            return
        loop.call_later(self._interval_s, self.flush)
        if self._backstop is None:
            self._start_backstop()

    def _start_backstop(self) -> None:
        with self._lock:
            if self._backstop is None and not self._closed.is_set():
                self._backstop = threading.Thread(target=self._backstop_loop, name="twenty-jobs job log",
                                                  daemon=True)
                self._backstop.start()

    def _backstop_loop(self) -> None:
        while not self._closed.wait(self._backstop_s):
            if self._lines:
                self.flush()

    def reset_after_fork(self) -> None:
        """In a forked child: the backstop thread does not exist there; the next line starts one."""
        closed = self._closed.is_set()
        self._closed = threading.Event()
        if closed:
            self._closed.set()
        self._backstop = None


_BUFFERS: weakref.WeakSet[LineBuffer] = weakref.WeakSet()


def _before_fork() -> None:
    # A child would inherit the waiting lines and write them a second time.
    for buffer in list(_BUFFERS):
        buffer.flush()


def _after_fork_in_child() -> None:
    for buffer in list(_BUFFERS):
        buffer.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
