"""How a failure is written into the job hash, in Node's shape (docs/bullmq-wire.md, "Failures").

Node stores `failedReason = err.message` and appends `err.stack` to the `stacktrace` JSON array;
a stack's first line is `ErrorType: message`, followed by the frames. Bull-board and Twenty's
admin show that first line at a glance. Here an entry is `ErrorType: message` followed by the
frames of the handler and what it called, in Python's `File "...", line N, in f` form, without
the worker's own frames. Failures the worker raises itself (no handler for the job name, data
that does not validate, a malformed job hash, a deferred failure) have no frames to show: their
entry is the first line alone.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from types import TracebackType

from twenty_jobs.errors import PermanentJobError

# Frames in this package are the worker's, not the handler's (the handler registry included).
_RUNTIME_DIR = str(Path(__file__).resolve().parent)


class WorkerFailure(PermanentJobError):
    """A failure the worker decides on its own; it carries no traceback into the job."""


def failed_reason(error: BaseException) -> str:
    """Node's `failedReason`: the message (the error's type when it has none)."""
    return str(error) or type(error).__name__


def stack_entry(error: BaseException) -> str:
    """One `stacktrace` entry for `error`."""
    head = f"{type(error).__name__}: {failed_reason(error)}"
    if isinstance(error, WorkerFailure):
        return head
    frames = traceback.format_list(traceback.extract_tb(_handler_frames(error.__traceback__)))
    return head + "\n" + "".join(frames).rstrip("\n") if frames else head


def _handler_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame outside the worker's runtime package on."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    return tb


def stacktrace_json(previous: list[str], error: BaseException, limit: int | None) -> str:
    """The job's `stacktrace` field after this failure: `previous` plus this entry, keeping the
    last `limit` (the job's `stackTraceLimit`; 0 keeps none, None all)."""
    entries = [*previous, stack_entry(error)]
    if limit is not None:
        entries = entries[-limit:] if limit else []
    return json.dumps(entries, separators=(",", ":"))
