"""BullMQ's Lua scripts, loaded from the BullMQ Python port's package data.

The scripts ARE the wire format: Node and Python must run the same logic on the same keys, so
twenty-jobs never writes its own. The only changes made to them are `GUARDED_READS`, for values
no BullMQ writes but a hand edit or a broken writer can leave: a stored `priority` of NaN (Lua's
`tonumber` takes it, ZADD refuses it as a score) and an `ats` that HINCRBY cannot add to. On
either, the shipped script stops half-way; when it is promoting due delayed jobs it has already
taken all of them out of `delayed`, so they are in no list (docs/bullmq-wire.md, "Guards on the
shipped Lua"). For every value BullMQ writes, the logic is the port's.

The port (pinned exactly in pyproject.toml) ships them as
`bullmq/commands/<name>-<number of keys>.lua`, byte-identical to Node bullmq 6.4.0's
(docs/bullmq-wire.md, "Lua scripts"). Only the files are used, not the port's Python classes.

`LuaScript` is what a connection needs to run one: EVALSHA by its SHA1, and on NOSCRIPT (a
restarted or flushed Redis) SCRIPT LOAD and EVALSHA again. `run_script` does that on a redis-py
client (the CLI's and the producer's); the worker's pipelined connection has its own.

The script calls of `wire.scripts` take a `ScriptRunner`: the worker's command connection is one
as it is (connection/protocol.py), a redis-py client becomes one through `ClientRunner`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    number_of_keys: int
    text: str
    sha: str

    def check_keys(self, keys: list[str]) -> None:
        if len(keys) != self.number_of_keys:
            raise ValueError(f"script {self.name} takes {self.number_of_keys} keys, got {len(keys)}")


@functools.cache
def _commands_dir() -> Path:
    """The port's `bullmq/commands` directory, found without importing the port: its Python
    classes, which twenty-jobs never uses, cost every process about 0.1 s and their imports."""
    spec = importlib.util.find_spec("bullmq")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the BullMQ Python port is not installed (pip install 'bullmq==3.4.4', or reinstall "
                           "twenty-jobs)")
    return Path(next(iter(spec.submodule_search_locations)), "commands")


@functools.cache
def _script_files() -> dict[str, str]:
    """Script name -> file name (`moveToFinished` -> `moveToFinished-14.lua`)."""
    files: dict[str, str] = {}
    for entry in _commands_dir().iterdir():
        stem, dot, ext = entry.name.rpartition(".")
        if ext == "lua" and dot:
            name, _, _ = stem.rpartition("-")
            files[name] = entry.name
    return files


# The guards: (the port's text, guarded text). Each only changes what happens on a value no BullMQ
# writes, where the shipped script would stop half-way and leave a job in no list or half-fetched.
GUARDED_READS = (
    # Reads of a job's stored priority used as a ZADD score: promoteDelayedJobs (moveToActive,
    # moveToFinished, moveToDelayed, retryJob) and moveParentToWait (moveToFinished).
    ('tonumber(rcall("HGET", jobKey, "priority"))', 'finitePriority(rcall("HGET", jobKey, "priority"))'),
    ("local priority = tonumber(jobAttributes[1]) or 0", "local priority = finitePriority(jobAttributes[1]) or 0"),
    # The fetch's count of starts (prepareJobForProcessing: moveToActive, and the fetch-next part of
    # moveToFinished and moveToDelayed): on an `ats` HINCRBY cannot add to, the job is still handed
    # over whole, and the worker fails it naming `ats` (wire/job.py repairs the counter then).
    ('rcall("HINCRBY", jobKey, "ats", 1)', 'redis.pcall("HINCRBY", jobKey, "ats", 1)'),
)
FINITE_PRIORITY = (
    "local function finitePriority(stored)\n"
    "  local number = tonumber(stored)\n"
    "  if number ~= number then return nil end -- NaN: ZADD refuses it as a score\n"
    "  return number\n"
    "end\n"
)


def guard(text: str) -> str:
    """`text` with GUARDED_READS applied (and `finitePriority` defined first where it is used)."""
    for read, guarded_read in GUARDED_READS:
        text = text.replace(read, guarded_read)
    return FINITE_PRIORITY + text if "finitePriority(" in text else text


@functools.cache
def script(name: str) -> LuaScript:
    """The port's script `name` (e.g. `moveToFinished`), guarded; raises KeyError for an unknown name."""
    file_name = _script_files()[name]
    text = (_commands_dir() / file_name).read_text(encoding="utf-8")
    text = guard(text)
    number_of_keys = int(file_name.rsplit("-", 1)[1].removesuffix(".lua"))
    return LuaScript(name, number_of_keys, text, hashlib.sha1(text.encode("utf-8")).hexdigest())


async def run_script(client: aioredis.Redis, lua: LuaScript, keys: list[str], args: list[Any]) -> Any:
    """Run `lua` on a redis-py client: EVALSHA, loading the script first if Redis lost it."""
    lua.check_keys(keys)
    try:
        return await client.evalsha(lua.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call,misc]
    except NoScriptError:
        await client.script_load(lua.text)
        return await client.evalsha(lua.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call,misc]


class ScriptRunner(Protocol):
    """What the script calls need from a connection (the worker's `CommandConnection` has it)."""

    async def call(self, *args: str | bytes | int | float) -> Any:
        """One command; its raw reply."""
        ...

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        """EVALSHA `lua`. `idempotent`: the script may be sent again if its reply was lost."""
        ...


class ClientRunner:
    """A redis-py client as a `ScriptRunner` (the CLI's and the producer's one-shot calls; their
    client retries a few times on its own, so `idempotent` is not needed here)."""

    __slots__ = ("client",)

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def call(self, *args: str | bytes | int | float) -> Any:
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def run_script(self, lua: LuaScript, keys: list[str], args: list[Any], *, idempotent: bool) -> Any:
        return await run_script(self.client, lua, keys, args)
