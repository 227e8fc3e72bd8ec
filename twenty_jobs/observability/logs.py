"""Log setup for the CLI: human-readable text by default, one JSON object per line with
`--log-format json` for log pipelines.

One handler writes everything to stderr. It also writes the two INFO lines of every job itself,
buffered, without a LogRecord (observability/job_lines.py, docs/job-logs.md); it writes the lines
it holds before any other record, so the log keeps the order in which things happened.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from twenty_jobs.observability.job_lines import FLUSH_INTERVAL_S, JsonJobLines, LineBuffer, TextJobLines
from twenty_jobs.runtime.events import job_log

if TYPE_CHECKING:
    from twenty_jobs.wire.job import JobRecord

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's handler: records formatted as text or JSON, and the job lines of JobLogObserver
    (a runtime.events.JobLineWriter) rendered the same way, buffered for up to `flush_interval_s`."""

    def __init__(self, stream: TextIO, fmt: str = "text", *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        super().__init__(stream)
        if fmt == "json":
            self.setFormatter(JsonFormatter())
            self.job_lines: TextJobLines | JsonJobLines = JsonJobLines(job_log.name)
        else:
            self.setFormatter(logging.Formatter(TEXT_FORMAT))
            self.job_lines = TextJobLines(job_log.name)
        assert self.lock is not None
        self.buffer = LineBuffer(self._write, self.lock, interval_s=flush_interval_s)
        # Bound once: these run twice per job.
        self._append = self.buffer.append
        self._started = self.job_lines.started
        self._completed = self.job_lines.completed

    def write_job_started(self, queue: str, job: JobRecord) -> None:
        if self.level <= logging.INFO:
            self._append(self._started(queue, job))

    def write_job_completed(self, queue: str, job: JobRecord, duration_ms: float) -> None:
        if self.level <= logging.INFO:
            self._append(self._completed(queue, job, duration_ms))

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the lock held. The job lines waiting happened before this record.
        self.buffer.flush()
        super().emit(record)

    def flush(self) -> None:
        self.buffer.flush()
        super().flush()

    def close(self) -> None:
        self.buffer.close()
        super().close()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            # What logging does with a record it cannot write: report it on stderr, carry on.
            self.handleError(logging.makeLogRecord({"name": job_log.name, "msg": "%d job log line(s)",
                                                    "args": (text.count("\n"),)}))


def setup_logging(level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr) at `level`, as text or JSON (`fmt`)."""
    handler = LogHandler(stream if stream is not None else sys.stderr, fmt)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, LogHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The port prints tracebacks of its own internal errors through `warnings`/print; keep
    # third-party chatter at WARNING.
    for noisy in ("asyncio", "httpx", "httpcore", "aiosmtplib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
