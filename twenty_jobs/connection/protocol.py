"""What the worker's hot path needs from its Redis command connection.

The runtime depends on this protocol, not on a client class: one socket, commands from many
concurrent slots pipelined on it, raw replies (no per-command reply callbacks).
"""

from __future__ import annotations

from typing import Any, Protocol

from twenty_jobs.wire.lua import LuaScript


class ReplyLostError(ConnectionError):
    """The connection dropped after the command was written and before its reply arrived: the
    command may or may not have run. Raised only for commands that are not safe to send twice;
    the caller decides (for a job: leave it to the stall checker rather than finish it twice)."""


class CommandConnection(Protocol):
    async def call(self, *args: str | bytes | int | float) -> Any:
        """Send one command and return its raw reply (strings decoded as UTF-8 with
        `surrogateescape`, so invalid bytes survive and the reader can report them)."""
        ...

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        """EVALSHA `lua` (SCRIPT LOAD and again on NOSCRIPT). A reply lost to a dropped connection
        is retried after reconnecting when `idempotent`, else raises ReplyLostError."""
        ...

    async def aclose(self) -> None: ...
