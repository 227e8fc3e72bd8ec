"""What BullMQ accepts as a queue name and as a key prefix (docs/bullmq-wire.md, "Queue names and key prefixes").

The rules are Node's, checked before anything is written, so a name Python accepts is one that a
Node `Queue` (and Redis' CLIENT SETNAME on a worker's connection) accepts too.
"""

from __future__ import annotations

# Node's QueueBase refuses a name with ':' ("Queue name cannot contain :"): it would make
# `<prefix>:<queue>:<suffix>` keys ambiguous.
QUEUE_NAME_FORBIDDEN = ":"

# A worker names its connection `<prefix>:<base64(queue)>`; Redis refuses a client name with a
# space, a newline or any byte outside '!'..'~'.
_CLIENT_NAME_CHARS = frozenset(chr(c) for c in range(ord("!"), ord("~") + 1))


def queue_name_problem(name: str) -> str | None:
    """Why Node BullMQ would refuse `name` as a queue name, or None when it is acceptable."""
    if not name:
        return "a queue name must not be empty"
    if QUEUE_NAME_FORBIDDEN in name:
        return f"queue name {name!r} contains ':', which BullMQ refuses in queue names"
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot be a BullMQ key prefix here, or None when it is acceptable."""
    if not prefix:
        return "the key prefix must not be empty (BullMQ's default is 'bull')"
    bad = sorted({c for c in prefix if c not in _CLIENT_NAME_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:3])
        return (
            f"key prefix {prefix!r} contains {shown}: a prefix may hold only printable ASCII without spaces, "
            "because workers put it in their Redis client name"
        )
    return None
