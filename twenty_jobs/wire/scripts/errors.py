"""The negative integers BullMQ's Lua scripts return instead of raising (docs/bullmq-wire.md,
"Error codes"), as exceptions that say which script refused which job and why."""

from __future__ import annotations

from typing import Any


class ScriptError(Exception):
    """A BullMQ script refused the call. `code` is the script's negative return value."""

    code = 0
    meaning = "unknown error code"

    def __init__(self, command: str, job_id: str | None, code: int | None = None) -> None:
        self.command = command
        self.job_id = job_id
        if code is not None:
            self.code = code
        about = f" for job {job_id}" if job_id is not None else ""
        super().__init__(f"{command}{about} refused (code {self.code}): {self.meaning}")


class JobMissing(ScriptError):
    code = -1
    meaning = "the job's hash does not exist (removed meanwhile)"


class LockMissing(ScriptError):
    code = -2
    meaning = "the job's lock is gone: it expired, and the stall checker or another worker took the job"


class JobNotInState(ScriptError):
    code = -3
    meaning = "the job is not in the state the script expects (another worker or a command moved it)"


class PendingChildren(ScriptError):
    code = -4
    meaning = "the job still has pending child jobs"


class ParentMissing(ScriptError):
    code = -5
    meaning = "the job's parent does not exist"


class LockMismatch(ScriptError):
    code = -6
    meaning = "the job's lock belongs to another worker"


class ParentCannotBeReplaced(ScriptError):
    code = -7
    meaning = "the job already exists under another parent"


class FailedChildren(ScriptError):
    code = -9
    meaning = "the job has at least one failed child job"


class SchedulerJobIdCollision(ScriptError):
    code = -10
    meaning = "a job with the next iteration's id already exists"


class SchedulerSlotsBusy(ScriptError):
    code = -11
    meaning = "the current and the next time slot of the job scheduler already have jobs"


_BY_CODE: dict[int, type[ScriptError]] = {
    cls.code: cls
    for cls in (JobMissing, LockMissing, JobNotInState, PendingChildren, ParentMissing, LockMismatch,
                ParentCannotBeReplaced, FailedChildren, SchedulerJobIdCollision, SchedulerSlotsBusy)
}


def check_reply(reply: Any, command: str, job_id: str | None = None) -> Any:
    """`reply`, unless it is one of the negative error codes: then the matching ScriptError."""
    if type(reply) is int and reply < 0:
        raise _BY_CODE.get(reply, ScriptError)(command, job_id, reply)
    return reply
