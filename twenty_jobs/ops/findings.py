"""The one findings model of `check`, `doctor` and `status`: what is wrong or worth knowing, on
which queue, and what to do about it.

`check` fails on ERROR findings and prints WARN ones; `doctor` prints every finding with its fix
and exits 1 on any ERROR; `status` prints the WARN and ERROR ones under its table.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from twenty_jobs.wire.keys import DEFAULT_PREFIX


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found. `code` names the kind of finding (stable, for scripts: `no_consumer`,
    `queue_paused`, `orphaned_jobs`...), `message` says what and where, `fix` what to do."""

    severity: Severity
    code: str
    message: str
    fix: str | None = None
    queue: str | None = None
    worker_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "queue": self.queue,
            "worker_id": self.worker_id,
        }

    def one_line(self) -> str:
        """The message and, when there is one, the fix: one line for logs and `check`."""
        return f"{self.message}. Fix: {self.fix}" if self.fix else self.message


def command(*args: str, prefix: str) -> str:
    """`twenty-jobs ARGS` as the user should type it, with the `--prefix` in use (a fix hint that
    drops it would act on another set of queues)."""
    words = ["twenty-jobs", *args]
    if prefix != DEFAULT_PREFIX:
        words += ["--prefix", prefix]
    return shlex.join(words)
