"""One parser from a BullMQ job hash to a typed job record.

Every reader of job hashes (the worker, `failed`, `status`, `check`, `doctor`) goes through
`parse_job_hash`, so a field is read one way everywhere. The field names and their encodings are
Node BullMQ's (docs/bullmq-wire.md, "The job hash"): numbers are stored as decimal strings, `data`,
`opts`, `progress`, `returnvalue`, `stacktrace` and `parent` as JSON written by `JSON.stringify`.

Node apps, bugs and hand edits write hashes BullMQ itself never would. The parser never raises
anything but `MalformedJob`, whose message names the job and the field, so the worker can fail such
a job on its first fetch instead of leaving it in `active` for the stall checker to loop on
(docs/bullmq-wire.md, "The job hash"). Strings are expected decoded with `errors="surrogateescape"`: invalid UTF-8
then survives decoding and is reported here, per field, instead of breaking the connection.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Largest value a job's numeric option may take: Node's Lua and msgpack use 64-bit integers, and
# BullMQ's own limits are far below this (priority <= 2^21). A larger value is a corrupted hash.
MAX_SAFE_INT = 2**53 - 1
# BullMQ's highest priority (Node's `Job.validateOptions`).
MAX_PRIORITY = 2_097_152
# The job-hash counters BullMQ's scripts HINCRBY (attempts made, attempts started, stalls).
COUNTER_FIELDS = ("atm", "ats", "stc")
# What Redis's HINCRBY accepts in a hash field: a decimal integer without sign, leading zero or
# space, within 64 bits (docs/bullmq-wire.md, "The job hash"). Anything else makes the calling
# script fail half-way. (Negative counts are valid for Redis but not for BullMQ.)
MAX_COUNTER_DIGITS = 18
# Numbers other than the counters are read with Lua's tonumber and JavaScript's parseInt: ASCII
# number text, which JavaScript may write as "3.0" or "1e+21" (no "1_000", " 12" or non-ASCII
# digits, which Python's int() would accept) (docs/fuzz.md).
_JS_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# How many attempts a job may ask for. Node accepts any number, but beyond this the retry loop of
# a job that always fails would run for longer than any Redis keeps its data.
MAX_ATTEMPTS = 1_000_000


class MalformedJob(Exception):
    """A job hash that no BullMQ writes: the message names the job, the field and what is wrong."""

    def __init__(self, job_id: str, name: str | None, field_name: str, problem: str) -> None:
        self.job_id = job_id
        self.name = name
        self.field = field_name
        self.problem = problem
        named = f" ('{name}')" if name else ""
        super().__init__(f"job {job_id}{named} cannot be run: field '{field_name}' {problem}")


@dataclass(slots=True)
class Backoff:
    """`opts.backoff`: BullMQ's `{type, delay, jitter}` (a bare number means fixed)."""

    type: str
    delay: int = 0
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The options in `opts` that the worker acts on; `raw` keeps everything as stored.

    Jobs whose `opts` text is the same share one JobOptions (Twenty's jobs of a queue all carry
    the same options): treat `raw` as read-only."""

    raw: dict[str, Any]
    attempts: int = 1
    backoff: Backoff | None = None
    # None: not set on the job (the worker's default applies; BullMQ's own default keeps jobs).
    remove_on_complete: bool | int | dict[str, int] | None = None
    remove_on_fail: bool | int | dict[str, int] | None = None
    lifo: bool = False
    stack_trace_limit: int | None = None
    keep_logs: int | None = None
    fail_parent_on_failure: bool = False
    continue_parent_on_failure: bool = False
    ignore_dependency_on_failure: bool = False
    remove_dependency_on_failure: bool = False


@dataclass(slots=True)
class JobRecord:
    """A job as stored in its hash, parsed and checked."""

    id: str
    name: str
    data: Any
    opts: JobOptions
    timestamp: int = 0
    delay: int = 0
    priority: int = 0
    attempts_made: int = 0
    attempts_started: int = 0
    stalled_counter: int = 0
    processed_on: int | None = None
    finished_on: int | None = None
    failed_reason: str | None = None
    deferred_failure: str | None = None
    repeat_job_key: str | None = None
    parent_key: str | None = None
    parent: dict[str, Any] | None = None
    progress: Any = 0
    returnvalue: Any = None
    stacktrace: list[str] = field(default_factory=list)
    workspace_id: str | None = None


# Parsed options per distinct `opts` text (a queue's jobs mostly share one or two).
OPTS_CACHE_SIZE = 256
_OPTS_CACHE: dict[str, JobOptions] = {}

# Options whose presence ties a job to a flow parent.
_PARENT_FLAGS = ("fpof", "cpof", "idof", "rdof")


def parse_job_hash(job_id: str, fields: Mapping[str, str]) -> JobRecord:
    """The record of job `job_id` from its hash fields; raises `MalformedJob` for anything else."""
    reader = _FieldReader(job_id, fields)
    name = reader.text("name", required=True) or ""
    reader.name = name
    opts_text = reader.text("opts") or ""
    opts = _OPTS_CACHE.get(opts_text)
    if opts is None:
        opts = _parse_opts(reader, reader.json_value("opts", default={}))
        if len(_OPTS_CACHE) >= OPTS_CACHE_SIZE:
            _OPTS_CACHE.clear()
        _OPTS_CACHE[opts_text] = opts
    record = JobRecord(
        id=reader.check_id(),
        name=name,
        data=reader.json_value("data", default={}),
        opts=opts,
        timestamp=reader.integer("timestamp") or 0,
        delay=reader.integer("delay") or 0,
        priority=reader.integer("priority") or 0,
        processed_on=reader.integer("processedOn"),
    )
    # The rest is present on some jobs only: read what is there.
    present = fields.keys() & _OPTIONAL_FIELDS
    if present:
        _read_optional(reader, record, present)
    record.workspace_id = workspace_id_of(record.data)
    return record


_OPTIONAL_FIELDS = frozenset({
    "atm", "attemptsMade", "ats", "stc", "stalledCounter", "finishedOn", "failedReason", "defa", "rjk",
    "parentKey", "parent", "progress", "returnvalue", "stacktrace",
})


def _read_optional(reader: _FieldReader, record: JobRecord, present: set[str]) -> None:
    # Node 5.40 wrote `attemptsMade` and `stalledCounter`; the scripts the worker runs keep `atm`
    # and `stc`, so those win whenever present, even at 0 (docs/bullmq-wire.md).
    if "atm" in present or "attemptsMade" in present:
        record.attempts_made = reader.counter("atm" if "atm" in present else "attemptsMade") or 0
    if "ats" in present:
        record.attempts_started = reader.counter("ats") or 0
    if "stc" in present or "stalledCounter" in present:
        record.stalled_counter = reader.counter("stc" if "stc" in present else "stalledCounter") or 0
    if "finishedOn" in present:
        record.finished_on = reader.integer("finishedOn")
    if "failedReason" in present:
        record.failed_reason = reader.text("failedReason")
    if "defa" in present:
        record.deferred_failure = reader.text("defa")
    if "rjk" in present:
        record.repeat_job_key = reader.text("rjk")
    if "parentKey" in present:
        record.parent_key = _parse_parent_key(reader)
    if "parent" in present:
        record.parent = _parse_parent(reader)
    if "progress" in present:
        record.progress = reader.json_value("progress", default=0)
    if "returnvalue" in present:
        record.returnvalue = reader.json_value("returnvalue", default=None, lenient=True)
    if "stacktrace" in present:
        record.stacktrace = _parse_stacktrace(reader)


def is_counter(value: str | bytes) -> bool:
    """Whether HINCRBY can add to this stored value (see COUNTER_FIELDS)."""
    if type(value) is bytes:
        value = value.decode("ascii", "replace")
    text = str(value)
    return text.isascii() and text.isdigit() and (text[0] != "0" or text == "0") and len(text) <= MAX_COUNTER_DIGITS


def lua_repairs(fields: Mapping[str, str]) -> dict[str, str]:
    """Values to store before a script touches a malformed job, so that the script cannot fail
    half-way on it: each counter HINCRBY cannot add to is set to its whole-number reading, or 0.
    (`parent` and `parentKey`, which the finishing script reads, by `parent_fields_breaking_scripts`.)"""
    repairs: dict[str, str] = {}
    for name in COUNTER_FIELDS:
        value = fields.get(name)
        if value is not None and not is_counter(value):
            repairs[name] = str(_lenient_whole(value))
    return repairs


def parent_fields_breaking_scripts(fields: Mapping[str, str]) -> list[str]:
    """The flow fields (`parent`, `parentKey`) the finishing script could not read: it decodes
    `parent` with cjson (no lone surrogates, no nesting) and builds the parent's key from its
    `queueKey` and `id`, or takes the id after the last ':' of `parentKey` (docs/fuzz.md)."""
    breaking: list[str] = []
    reader = _FieldReader("", fields)
    for name, check in (("parentKey", _parse_parent_key), ("parent", _parse_parent)):
        if fields.get(name) is None:
            continue
        try:
            check(reader)
        except MalformedJob:
            breaking.append(name)
    return breaking


def _lenient_whole(value: str) -> int:
    try:
        number = float(value)
    except ValueError:
        return 0
    if not math.isfinite(number):
        return 0
    return min(max(int(number), 0), MAX_SAFE_INT)


def workspace_id_of(data: Any) -> str | None:
    """Twenty's jobs carry `workspaceId` in their data (docs/twenty-queues.md)."""
    if isinstance(data, dict):
        value = data.get("workspaceId")
        if isinstance(value, str):
            return value
    return None


KEEP_ALL: dict[str, int] = {"count": -1}


def keep_jobs(setting: bool | int | dict[str, int] | None) -> dict[str, int]:
    """`removeOnComplete`/`removeOnFail` as the Lua scripts' `keepJobs`: keep all (`count` -1;
    also for None, not set), none (`count` 0), the last N, or an `{age, count, limit}` window.
    The result may be shared: do not modify it."""
    if setting is True:
        return {"count": 0}
    if setting is False or setting is None:
        return KEEP_ALL
    if isinstance(setting, int):
        return {"count": setting}
    return setting  # read-only use: no copy per job


class _FieldReader:
    """Reads one hash's fields, raising `MalformedJob` that names the field on any problem."""

    def __init__(self, job_id: str, fields: Mapping[str, str]) -> None:
        self.job_id = job_id
        self.fields = fields
        self.name: str | None = None

    def fail(self, field_name: str, problem: str) -> MalformedJob:
        return MalformedJob(_printable(self.job_id), self.name and _printable(self.name), field_name, problem)

    def check_id(self) -> str:
        if not self.job_id.isascii() and not _is_utf8(self.job_id):
            raise self.fail("id", "is not valid UTF-8")
        return self.job_id

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.fields.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(key, "is missing")
            return None
        if type(value) is not str:
            raise self.fail(key, f"is not text ({type(value).__name__})")
        if not value.isascii() and not _is_utf8(value):
            raise self.fail(key, "is not valid UTF-8")
        return value

    def integer(self, key: str) -> int | None:
        value = self.fields.get(key)
        if type(value) is str and value.isdigit() and value.isascii() and len(value) < 16:
            return int(value)  # the common case, before `text`'s checks (which it passes)
        value = self.text(key)
        if value is None:
            return None
        if not _JS_NUMBER.fullmatch(value):
            raise self.fail(key, f"is not a number: {_preview(value)}")
        try:
            number = int(value)
        except ValueError:
            # JavaScript writes whole numbers beyond 2^53 or from arithmetic as "1e+21" / "3.0".
            try:
                as_float = float(value)
            except ValueError:
                raise self.fail(key, f"is not a number: {_preview(value)}") from None
            if not math.isfinite(as_float) or not as_float.is_integer():
                raise self.fail(key, f"is not a whole number: {_preview(value)}") from None
            number = int(as_float)
        if not 0 <= number <= MAX_SAFE_INT:
            raise self.fail(key, f"is out of range: {_preview(value)}")
        return number

    def counter(self, key: str) -> int | None:
        """A field the scripts HINCRBY: a plain decimal integer, nothing else (see COUNTER_FIELDS)."""
        value = self.fields.get(key)
        if (type(value) is str and value.isdigit() and value.isascii() and len(value) < 16
                and (value[0] != "0" or len(value) == 1)):
            return int(value)  # the common case, before the checks below (which it passes)
        value = self.text(key)
        if value is None:
            return None
        if not is_counter(value):
            raise self.fail(key, f"is not a whole number BullMQ's scripts can count on: {_preview(value)}")
        number = int(value)
        if number > MAX_SAFE_INT:
            raise self.fail(key, f"is out of range: {_preview(value)}")
        return number

    def json_value(self, key: str, *, default: Any, lenient: bool = False) -> Any:
        value = self.text(key)
        if value is None:
            return default
        try:
            return _decode(value)
        except RecursionError:
            raise self.fail(key, "is JSON nested too deeply to read") from None
        except ValueError as exc:
            if lenient:  # returnvalue: Node stores a plain string unquoted in some versions
                return value
            raise self.fail(key, f"is not valid JSON ({exc})") from None


def _parse_opts(reader: _FieldReader, raw: Any) -> JobOptions:
    if not isinstance(raw, dict):
        raise reader.fail("opts", f"is not a JSON object but {_js_type(raw)}")
    attempts = raw.get("attempts")
    flags = []
    for short in _PARENT_FLAGS:
        value = raw.get(short)
        if value is not None and not isinstance(value, bool):
            raise reader.fail(f"opts.{short}", f"is not true or false but {_js_type(value)}")
        flags.append(bool(value))
    for key in ("delay", "priority"):
        if raw.get(key) is not None:
            _whole(reader, f"opts.{key}", raw[key], 0, MAX_PRIORITY if key == "priority" else MAX_SAFE_INT)
    parent = raw.get("parent")
    # Node writes {id, queue}; readers build the parent's key from both.
    if parent is not None and not (
        isinstance(parent, dict) and isinstance(parent.get("id"), str) and isinstance(parent.get("queue"), str)
    ):
        raise reader.fail("opts.parent", "is not an object with string 'id' and 'queue'")
    trace_limit, keep_logs = raw.get("stackTraceLimit"), raw.get("kl")  # keepLogs is stored as `kl`
    return JobOptions(
        raw=raw,
        attempts=max(_whole(reader, "opts.attempts", attempts, 0, MAX_ATTEMPTS) if attempts is not None else 1, 1),
        backoff=_parse_backoff(reader, raw.get("backoff")),
        remove_on_complete=_parse_keep(reader, "opts.removeOnComplete", raw.get("removeOnComplete")),
        remove_on_fail=_parse_keep(reader, "opts.removeOnFail", raw.get("removeOnFail")),
        lifo=bool(raw.get("lifo")),
        stack_trace_limit=(_whole(reader, "opts.stackTraceLimit", trace_limit, 0, MAX_SAFE_INT)
                           if trace_limit is not None else None),
        keep_logs=_whole(reader, "opts.kl", keep_logs, 0, MAX_SAFE_INT) if keep_logs is not None else None,
        fail_parent_on_failure=flags[0],
        continue_parent_on_failure=flags[1],
        ignore_dependency_on_failure=flags[2],
        remove_dependency_on_failure=flags[3],
    )


def _parse_backoff(reader: _FieldReader, raw: Any) -> Backoff | None:
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Backoff("fixed", _whole(reader, "opts.backoff", raw, 0, MAX_SAFE_INT))
    if not isinstance(raw, dict):
        raise reader.fail("opts.backoff", f"is not a number or an object but {_js_type(raw)}")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise reader.fail("opts.backoff.type", f"is not a strategy name but {_js_type(kind)}")
    delay = raw.get("delay")
    backoff = Backoff(kind, _whole(reader, "opts.backoff.delay", delay, 0, MAX_SAFE_INT) if delay is not None else 0)
    jitter = raw.get("jitter")
    if jitter is not None:
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise reader.fail("opts.backoff.jitter", f"is not a number from 0 to 1: {_preview(json.dumps(jitter))}")
        backoff.jitter = float(jitter)
    return backoff


def _parse_keep(reader: _FieldReader, key: str, raw: Any) -> bool | int | dict[str, int] | None:
    """removeOnComplete/removeOnFail: a boolean, a count, or `{age, count, limit}` (seconds, jobs)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        return _whole(reader, key, raw, 0, MAX_SAFE_INT)
    if isinstance(raw, dict):
        window: dict[str, int] = {}
        for name, value in raw.items():
            if name not in ("age", "count", "limit"):
                raise reader.fail(f"{key}.{name}", "is not one of age, count, limit")
            window[name] = _whole(reader, f"{key}.{name}", value, 0, MAX_SAFE_INT)
        return window
    raise reader.fail(key, f"is not true, false, a count or {{age, count}} but {_js_type(raw)}")


def _parse_parent_key(reader: _FieldReader) -> str | None:
    """`parentKey` of a flow child: `<queue key>:<parent id>`; without `parent`, the finishing Lua
    takes the parent's id from after the last ':' (docs/fuzz.md)."""
    parent_key = reader.text("parentKey")
    if parent_key is None:
        return None
    head, colon, parent_id = parent_key.rpartition(":")
    if not (head and colon and parent_id):
        raise reader.fail("parentKey", f"is not '<queue key>:<parent id>': {_preview(parent_key)}")
    return parent_key


def _parse_parent(reader: _FieldReader) -> dict[str, Any] | None:
    """`parent` of a flow child, decoded by the finishing Lua with cjson, which refuses lone
    surrogates and deep nesting: it must be Node's flat `{id, queueKey, fpof?, ...}`. The script
    decodes any `parent` that is there, so `null` or an empty text breaks it as much as a number."""
    raw = reader.fields.get("parent")
    if raw is None:
        return None
    if raw == "":
        raise reader.fail("parent", "is empty (the finishing script cannot decode it)")
    parent = reader.json_value("parent", default=None)
    if not isinstance(parent, dict) or not isinstance(parent.get("id"), str) or not isinstance(
        parent.get("queueKey"), str
    ):
        raise reader.fail("parent", "is not an object with string 'id' and 'queueKey'")
    for name, value in parent.items():
        if not isinstance(value, str | bool | int | float) or (isinstance(value, str) and not _is_utf8(value)):
            raise reader.fail("parent", f"member '{_printable(str(name))}' is not a flat string, number or boolean")
    return parent


def _parse_stacktrace(reader: _FieldReader) -> list[str]:
    trace = reader.json_value("stacktrace", default=[], lenient=True)
    if isinstance(trace, list):
        return [line if isinstance(line, str) else json.dumps(line) for line in trace]
    return [str(trace)]


def _whole(reader: _FieldReader, key: str, value: Any, low: int, high: int) -> int:
    """A JSON number that must be a whole number in [low, high] (JavaScript writes 3 as 3, but
    arithmetic may leave 3.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise reader.fail(key, f"is not a number but {_js_type(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise reader.fail(key, f"is not a whole number: {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise reader.fail(key, f"is out of range ({low} to {high}): {number}")
    return number


def _reject_constant(name: str) -> Any:
    # JSON.parse refuses NaN and Infinity; so do we, or Python would accept what Node cannot read.
    raise ValueError(f"{name} is not JSON")


# One decoder for every field (json.loads with an option would build a new one per call).
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(text: str) -> Any:
    """`JSON.parse`: one value, white space around it allowed. BullMQ writes none, so the value
    alone is tried first (raw_decode skips decode's two white-space scans)."""
    try:
        value, end = _JSON.raw_decode(text)
    except json.JSONDecodeError:
        return _JSON.decode(text)
    return value if end == len(text) else _JSON.decode(text)


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: str) -> str:
    """A value safe to put in a message: invalid UTF-8 bytes shown as escapes."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _preview(value: str, limit: int = 40) -> str:
    text = _printable(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _js_type(value: Any) -> str:
    """How a JavaScript reader would name the JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
