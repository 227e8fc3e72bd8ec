"""The two per-job log lines, rendered and written without the `logging` machinery
(docs/job-logs.md).

A LogRecord, its formatting and a write per line cost about 17 µs per line, more than the rest of
the worker's work on a job. `TextJobLines`/`JsonJobLines` render the very line that the CLI's
formatter would render for the record `JobLogObserver` logs (runtime/events.py; the same message
templates, checked equal by tests/test_job_logs.py), with the start of the line made once per
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

from twenty_jobs.runtime.events import FINISHED_MESSAGE, STARTED_MESSAGE, workspace_note

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


class _Clock:
    """The start of a line up to the message, made once per millisecond, its date part once per
    second (a clock reading and a comparison per line otherwise)."""

    __slots__ = ("_date", "_date_of", "_ms", "_second", "_stamp", "_stamp_of")

    def __init__(self, date_of: Callable[[int], str], stamp_of: Callable[[str, int], str]) -> None:
        self._date_of = date_of
        self._stamp_of = stamp_of
        self._ms = self._second = -1
        self._date = self._stamp = ""

    def stamp(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            second = ms // 1000
            if second != self._second:
                self._date = self._date_of(second)
                self._second = second
            self._stamp = self._stamp_of(self._date, ms % 1000)
            self._ms = ms
        return self._stamp


def _completed_message(queue: str, job: JobRecord, duration_ms: float) -> str:
    return FINISHED_MESSAGE % ("completed", queue, job.name, job.id, job.attempts_made, duration_ms,
                               workspace_note(job), "")


class TextJobLines:
    """Lines as `logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")` renders
    the job's INFO records (observability/logs.py, TEXT_FORMAT)."""

    __slots__ = ("_clock",)

    def __init__(self, logger_name: str) -> None:
        head = f" {LEVEL_NAME:<7} {logger_name}: "
        # asctime is local time, then ",<ms>" (logging's default_msec_format).
        self._clock = _Clock(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)),
                             lambda date, ms: f"{date},{ms:03d}{head}")

    def started(self, queue: str, job: JobRecord) -> str:
        message = STARTED_MESSAGE % (queue, job.name, job.id, job.attempts_made + 1, workspace_note(job))
        return f"{self._clock.stamp()}{message}\n"

    def completed(self, queue: str, job: JobRecord, duration_ms: float) -> str:
        return f"{self._clock.stamp()}{_completed_message(queue, job, duration_ms)}\n"


class JsonJobLines:
    """Lines as observability/logs.py's `JsonFormatter` renders the job's INFO records: the same
    keys in the same order, strings escaped by the same encoder as `json.dumps(ensure_ascii=False)`."""

    __slots__ = ("_clock",)

    def __init__(self, logger_name: str) -> None:
        head = f'", "level": "{LEVEL_NAME.lower()}", "logger": {encode_basestring(logger_name)}, "message": '
        # ts is UTC with milliseconds and a Z.
        self._clock = _Clock(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
                             lambda date, ms: f'{{"ts": "{date}.{ms:03d}Z{head}')

    def started(self, queue: str, job: JobRecord) -> str:
        attempt = job.attempts_made + 1
        message = STARTED_MESSAGE % (queue, job.name, job.id, attempt, workspace_note(job))
        return (f"{self._clock.stamp()}{encode_basestring(message)}, {self._job_fields(queue, job)}, "
                f'"attempt": {attempt}}}\n')

    def completed(self, queue: str, job: JobRecord, duration_ms: float) -> str:
        message = _completed_message(queue, job, duration_ms)
        # json.dumps writes floats with float.__repr__, as here.
        return (f"{self._clock.stamp()}{encode_basestring(message)}, {self._job_fields(queue, job)}, "
                f'"attempt": {job.attempts_made}, "duration_ms": {round(duration_ms, 3)!r}, "outcome": "completed"}}\n')

    @staticmethod
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
            taken = lines[:count]
            del lines[:count]
            piece: list[str] = []
            size = 0
            for line in taken:
                # UTF-8 takes at most 4 bytes a character; an ASCII line, one.
                length = len(line) if line.isascii() else 4 * len(line)
                if piece and size + length > PIPE_BUF:
                    self._write("".join(piece))
                    piece, size = [], 0
                piece.append(line)
                size += length
            self._write("".join(piece))

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
