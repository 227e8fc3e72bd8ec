"""Twenty's queue names and per-queue worker settings.

Source: `MessageQueue` (message-queue.constants.ts) and `MESSAGE_QUEUE_WORKER_CONFIG`
(message-queue-worker-config.constant.ts) of Twenty's current source (bullmq >= 5.64), which has 25
queues; the table of Twenty 1.14 (bullmq 5.40.0) is the first 18 of them. Facts and versions:
docs/twenty-queues.md. The Redis queue name is the enum's string value. Lower priority = served
first.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass

from twenty_jobs.errors import ConfigError
from twenty_jobs.wire.names import queue_name_problem

# What Twenty's current source calls itself in this table (docs/twenty-queues.md).
DESCRIBES = "Twenty's current source (25 queues, bullmq >= 5.64); Twenty 1.14 (bullmq 5.40.0) has the first 18"

DEFAULT_LOCK_DURATION_MS = 30_000
# The enqueue priority given to the queues whose worker config could not be read.
UNVERIFIED_PRIORITY = 5
DEFAULT_MAX_STALLED_COUNT = 1


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """How Twenty's own worker runs one queue."""

    name: str
    priority: int
    concurrency: int = 1
    lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS
    max_stalled_count: int = DEFAULT_MAX_STALLED_COUNT
    # Twenty cancels still-running jobs after AI_STREAM_SHUTDOWN_DRAIN_MS on shutdown (ai-stream only).
    bounded_shutdown_drain: bool = False
    # False where Twenty's worker config for the queue could not be read (docs/twenty-queues.md):
    # the values are then Twenty's common entry, and `doctor` says so.
    config_verified: bool = True


def _q(name: str, priority: int, concurrency: int = 1, **kw: int | bool) -> QueueConfig:
    return QueueConfig(name, priority, concurrency, **kw)  # type: ignore[arg-type]


TWENTY_QUEUES: dict[str, QueueConfig] = {
    q.name: q
    for q in (
        _q("task-assigned-queue", 4),
        _q("messaging-queue", 2),
        _q("webhook-queue", 2),
        _q("cron-queue", 7),
        _q("email-queue", 1),
        _q("calendar-queue", 4),
        _q("connected-account-sync-webhook-queue", 1, 5),
        _q("contact-creation-queue", 4),
        _q("billing-queue", 1),
        _q("workspace-queue", 5),
        _q("entity-events-to-db-queue", 1),
        _q("workflow-queue", 2),
        _q("delayed-jobs-queue", 3),
        _q("delete-cascade-queue", 6),
        _q("logic-function-queue", 4, 10),
        _q("trigger-queue", 5),
        _q("ai-queue", 5),
        _q("ai-stream-queue", 2, 20, lock_duration_ms=600_000, max_stalled_count=0,
           bounded_shutdown_drain=True),
        # Added after 1.14. Their MESSAGE_QUEUE_WORKER_CONFIG entries are not known here: Twenty's
        # common entry (concurrency 1, lock 30 s, maxStalledCount 1) and a middle priority.
        *(
            _q(name, UNVERIFIED_PRIORITY, config_verified=False)
            for name in (
                "record-export-queue", "campaign-queue", "campaign-send-queue", "campaign-engagement-queue",
                "event-log-queue", "application-lifecycle-hook-queue", "application-upgrade-queue",
            )
        ),
    )
}

# Names used by older Twenty releases (renamed or removed since). Served with the settings they had:
# serverless-function-queue became logic-function-queue (priority 4); parse-message-queue had no
# priority entry, so it gets the default of the newest table's messaging queue.
LEGACY_QUEUES: dict[str, QueueConfig] = {
    q.name: q
    for q in (
        _q("serverless-function-queue", 4),
        _q("parse-message-queue", 2),
    )
}

KNOWN_QUEUES: dict[str, QueueConfig] = {**TWENTY_QUEUES, **LEGACY_QUEUES}

# A queue that is not Twenty's (any Node BullMQ app, or a team's own Python jobs) gets BullMQ's defaults.
DEFAULT_PRIORITY = 0


def queue_config(name: str, *, allow_custom: bool = False) -> QueueConfig:
    """The settings for queue `name`: Twenty's, or BullMQ's defaults for a queue of another
    application when `allow_custom` (otherwise an unknown name is refused, see check_queue_name)."""
    check_queue_name(name, allow_custom=allow_custom, how_to_allow="allow custom queues (allow_custom=True)")
    return KNOWN_QUEUES.get(name) or QueueConfig(name, DEFAULT_PRIORITY)


def check_queue_name(
    name: str,
    *,
    accepted: Collection[str] = (),
    allow_custom: bool = False,
    how_to_allow: str,
) -> None:
    """THE queue-name rule, for every command and API (raises ConfigError with one line).

    A name must be one BullMQ accepts (wire/names.py); then it must be one of Twenty's queues, one
    the caller knows to be real (`accepted`: queues with a handler in this process, queues that
    exist under the prefix), or explicitly allowed (`allow_custom`). Refusing the rest matters: a
    typo would otherwise create a queue nobody consumes, the single most common Twenty complaint.
    `how_to_allow` tells the user how to allow a queue of their own, in the words of the interface
    they are using (a CLI flag, an API argument).
    """
    problem = queue_name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    if allow_custom or name in KNOWN_QUEUES or name in accepted:
        return
    raise ConfigError(unknown_queue_message(name, accepted=accepted, how_to_allow=how_to_allow))


def unknown_queue_message(name: str, *, accepted: Collection[str] = (), how_to_allow: str) -> str:
    close = difflib.get_close_matches(name, [*KNOWN_QUEUES, *accepted], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (
        f"unknown queue '{name}'.{hint} Known Twenty queues: {', '.join(TWENTY_QUEUES)}. "
        f"For a queue of your own, {how_to_allow}."
    )


def select_queues(
    candidates: list[str], enabled: list[str], excluded: list[str]
) -> list[str]:
    """Twenty's rule (should-create-worker-for-queue.util.ts @ 03f7c358): a non-empty enabled list
    keeps only its members; then anything in the excluded list is dropped. Order is preserved."""
    chosen = [q for q in candidates if not enabled or q in enabled]
    return [q for q in chosen if q not in excluded]
