"""The seeded fuzz cases: good jobs and broken job hashes, every field and every option.

`generate(seed, count)` is deterministic: case `i` is built from `random.Random(f"{seed}:{i}")`
alone, so one case can be replayed without the others (`FUZZ_ONLY=i`). The mutation kinds are
taken in a fixed cycle (`SCHEDULE`), so any run of at least `len(SCHEDULE)` cases meets every
kind, and about one case in four is a good job.

Each kind says what the worker may do with its job (`Expect`):
* COMPLETE: Node bullmq reads and runs this job; a handler that returns normally completes it.
* FAIL: no worker can run it (no name, data or opts it can read, a deferred failure): it must
  end failed, with a reason that names the job and the field.
* EITHER: odd but not fatal (a bad retry option on a job that succeeds, a broken leftover field):
  completing it once is right, and so is failing it with such a reason.
Whatever the kind, the job ends on its first fetch and in the `completed` or `failed` set.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from tests.fuzz.node_writes import (
    DELAYED,
    PRIORITIZED,
    STALLED,
    WAIT,
    WAIT_LIFO,
    WAITING_CHILDREN,
    PlantedJob,
    cjson_encode,
)
from twenty_jobs.twenty.jsonjs import stringify

T = TypeVar("T")
GOOD_NAME = "FuzzGood"
# Node 5.40.0 writes data nested this deep through Queue.add (docs/fuzz.md).
DEEP_MIN, DEEP_MAX = 1_000, 1_200


class Expect(Enum):
    COMPLETE = "completed"
    FAIL = "failed"
    EITHER = "completed or failed"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A planted job and what must become of it."""

    planted: PlantedJob
    expect: Expect
    # The field a failure reason must name, and the words accepted as naming it.
    field: str
    field_words: tuple[str, ...]
    # Words that name the job in a failure reason (its id, or its name for an unknown name).
    job_words: tuple[str, ...]
    # The `fuzz` token in the job's data, to find the handler's call (None: data has none).
    token: str | None
    # Completing it may delete the hash (its own removeOnComplete is true or 0).
    removed_on_complete: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    seed: int
    index: int
    kind: str
    jobs: tuple[JobSpec, ...]

    @property
    def label(self) -> str:
        return f"case {self.index} ({self.kind}, seed {self.seed})"


# -- drafts: a job under construction ---------------------------------------------------------


@dataclass
class Draft:
    """A Node-shaped job being built; `finish()` turns it into a JobSpec."""

    job_id: bytes
    token: str | None
    data: bytes
    opts: dict[str, Any]
    raw_opts: bytes | None = None  # opts text written as is (a hand edit), instead of cjson's
    place: str = WAIT
    name: bytes = GOOD_NAME.encode()
    extra: list[tuple[bytes, bytes]] = field(default_factory=list)
    dropped: set[bytes] = field(default_factory=set)
    overrides: dict[bytes, bytes] = field(default_factory=dict)
    priority: int = 0
    delay_ms: int = 0
    now_ms: int = 0
    expect: Expect = Expect.COMPLETE
    field_name: str = ""
    field_words: tuple[str, ...] = ()
    job_words: tuple[str, ...] = ()
    children: tuple[bytes, ...] = ()
    # Which variant of its kind the mutation takes: the case's cycle through SCHEDULE, so the
    # first cycles take the first (headline) variants and a long run takes each in turn.
    variant: int = 0

    def pick(self, variants: Sequence[T]) -> T:
        return variants[self.variant % len(variants)]

    def set(self, name: str, value: bytes) -> None:
        """Put `value` in hash field `name` (replacing Node's value, or adding the field)."""
        self.overrides[name.encode()] = value

    def drop(self, name: str) -> None:
        self.dropped.add(name.encode())

    def finish(self) -> JobSpec:
        opts_text = self.raw_opts if self.raw_opts is not None else cjson_encode(self.opts)
        base: list[tuple[bytes, bytes]] = [
            (b"name", self.name),
            (b"data", self.data),
            (b"opts", opts_text),
            (b"timestamp", str(self.now_ms).encode()),
            (b"delay", str(self.delay_ms).encode()),
            (b"priority", str(self.priority).encode()),
            *self.extra,
        ]
        fields: list[tuple[bytes, bytes]] = []
        seen: set[bytes] = set()
        for key, value in base:
            seen.add(key)
            if key in self.dropped:
                continue
            fields.append((key, self.overrides.get(key, value)))
        fields += [(k, v) for k, v in self.overrides.items() if k not in seen and k not in self.dropped]
        written = dict(fields).get(b"opts", b"")
        planted = PlantedJob(
            job_id=self.job_id,
            fields=tuple(fields),
            place=self.place,
            priority=self.priority,
            due_ms=self.now_ms + self.delay_ms,
            children=self.children,
        )
        job_words = self.job_words or (self.job_id.decode("utf-8", "backslashreplace"),)
        return JobSpec(
            planted=planted,
            expect=self.expect,
            field=self.field_name,
            field_words=self.field_words or ((self.field_name,) if self.field_name else ()),
            job_words=job_words,
            token=self.token,
            removed_on_complete=_removes_on_complete(written),
        )


def _removes_on_complete(opts_text: bytes) -> bool:
    """Whether these stored opts ask BullMQ to delete the job once completed (true, or a count of 0)."""
    try:
        opts = json.loads(opts_text)
    except (ValueError, RecursionError):
        return False
    setting = opts.get("removeOnComplete") if isinstance(opts, dict) else None
    return setting is True or (type(setting) in (int, float) and setting == 0)


# -- values ---------------------------------------------------------------------------------------

TEXTS = ["plain", "é accent", "中文", "emoji 😀", "line\u2028sep", 'quote " and \\ backslash', "a/b",
         "tab\tnew\nline", "\x01control", "", " ", "x" * 300]
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                b"\x80", b"\xc0\xaf"]
# Headline values first: non-numeric, what JavaScript writes for 3 (Redis counters refuse it),
# huge, negative, then the rest.
BAD_NUMBERS: list[bytes] = [b"abc", b"3.0", b"99999999999999999999999", b"-5", b"\xff1", b"1.5", b"1e400",
                            b"NaN", b"Infinity", b" 12", b"0x10", b"1_000", "١٢".encode(), b"1e+21", b"+7", b"[]"]


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS)


def _scalar(rng: random.Random) -> Any:
    return rng.choice([
        _text(rng), rng.randint(-(2**31), 2**31), 2**53 + 1, 0.1, 1e21, -0.0, 1.5e-7, True, False, None,
    ])


def _payload(rng: random.Random, depth: int = 0) -> Any:
    if depth >= 3 or rng.random() < 0.4:
        return _scalar(rng)
    if rng.random() < 0.5:
        return [_payload(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_text(rng)[:12] or "k": _payload(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _invalid_utf8(rng: random.Random, text: str = "") -> bytes:
    head = text.encode()
    return head + rng.choice(INVALID_UTF8) + rng.choice([b"", b"tail", b"\xff\xfe"])


def _deep_json(rng: random.Random) -> str:
    """JSON nested DEEP_MIN..DEEP_MAX levels, as JSON.stringify writes it."""
    depth = rng.randint(DEEP_MIN, DEEP_MAX)
    if rng.random() < 0.5:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


# -- the good job every kind starts from ----------------------------------------------------------


def good_draft(rng: random.Random, index: int, now_ms: int, *, place: str | None = None) -> Draft:
    """A job exactly as Node's Queue.add (or Twenty's BullMQDriver.add) writes it, with random
    valid options; the handler for GOOD_NAME completes it."""
    token = f"t{index:05d}-{rng.getrandbits(32):08x}"
    if rng.random() < 0.25:
        # A counter id, as Node's Queue.add gives a job without a jobId; offset so that the id
        # stays unique in a run and cannot be a substring of another id in a failure reason.
        job_id = f"{100_000 + index}".encode()
    else:
        job_id = f"fz{index:05d}-{_uuid(rng)}".encode()  # Twenty's `<id>-<uuid>` shape
    payload: dict[str, Any] = {"fuzz": token}
    if rng.random() < 0.5:
        payload["workspaceId"] = _uuid(rng)
    for _ in range(rng.randint(0, 3)):
        payload[_text(rng)[:10] or "k"] = _payload(rng)
    opts: dict[str, Any] = {"attempts": rng.choice([0, 1, 1, 3, 5])}
    if rng.random() < 0.4:
        opts["backoff"] = rng.choice([
            {"type": "fixed", "delay": rng.randint(0, 5000)},
            {"type": "exponential", "delay": rng.randint(1, 5000)},
            {"type": "exponential", "delay": 1000, "jitter": rng.choice([0.1, 0.5, 1])},
        ])
    if rng.random() < 0.6:
        opts["removeOnComplete"] = rng.choice([
            False, True, 0, 1000, {"age": 14400, "count": 1000}, {"age": 3600}, {"count": 1000},
        ])
    if rng.random() < 0.6:
        # Never a value that would delete a failed job: a failed job's reason must stay readable.
        opts["removeOnFail"] = rng.choice([False, 1000, {"age": 604800, "count": 1000}, {"count": 5000}])
    if rng.random() < 0.3:
        opts["jobId"] = job_id.decode()
    chosen = place or rng.choice([WAIT, WAIT, WAIT, WAIT_LIFO, PRIORITIZED, DELAYED])
    draft = Draft(job_id=job_id, token=token, data=stringify(payload).encode(), opts=opts, place=chosen,
                  now_ms=now_ms)
    if chosen == WAIT_LIFO:
        opts["lifo"] = True
    elif chosen == PRIORITIZED:
        draft.priority = opts["priority"] = rng.choice([1, 2, 4, 7, 100, 2_097_152])
    elif chosen == DELAYED:
        draft.delay_ms = opts["delay"] = rng.randint(1, 300)
    return draft


# -- the mutation kinds ---------------------------------------------------------------------------

Mutation = Callable[[random.Random, Draft], None]
KINDS: dict[str, Mutation] = {}


def kind(name: str) -> Callable[[Mutation], Mutation]:
    def register(func: Mutation) -> Mutation:
        KINDS[name] = func
        return func

    return register


def _expect(draft: Draft, expect: Expect, field_name: str, *words: str) -> None:
    draft.expect = expect
    draft.field_name = field_name
    draft.field_words = (field_name, *words)


# Good jobs: what Node writes, including fields left by earlier attempts.


@kind("good")
def _good(rng: random.Random, d: Draft) -> None:
    pass


@kind("good.retried")
def _good_retried(rng: random.Random, d: Draft) -> None:
    """Back in wait after a failed attempt, as Node's retryJob leaves it."""
    d.opts["attempts"] = rng.randint(3, 10)
    d.extra += [(b"processedOn", str(d.now_ms - 5000).encode()), (b"ats", b"1"), (b"atm", b"1"),
                (b"failedReason", b"boom"),
                (b"stacktrace", stringify(["Error: boom\n    at processor (/app/job.js:1:1)"]).encode()),
                (b"progress", rng.choice([b"0", b"50", b'{"half":true}']))]


@kind("good.leftovers")
def _good_leftovers(rng: random.Random, d: Draft) -> None:
    """Valid fields a worker never looks at before running the job."""
    d.extra += [(b"returnvalue", rng.choice([b"null", b'{"r":1}', b'"text"'])),
                (b"progress", rng.choice([b"0", b"100", b'{"done":false}'])),
                (b"stalledCounter", b"0"), (b"stc", b"0"), (b"attemptsMade", b"0"),
                (b"finishedOn", b"0")]


@kind("good.stalled")
def _good_stalled(rng: random.Random, d: Draft) -> None:
    """A job whose worker died: the stall checker moves it back to wait, then it runs."""
    d.place = STALLED
    d.extra += [(b"processedOn", str(d.now_ms - 60_000).encode()), (b"ats", b"1")]


@kind("good.unicode_id")
def _good_unicode_id(rng: random.Random, d: Draft) -> None:
    d.job_id = d.job_id + d.pick(["-é", "-中文", "-😀", "-a b"]).encode()


@kind("good.missing_data_and_opts")
def _good_missing(rng: random.Random, d: Draft) -> None:
    """Node's reader defaults a missing or empty `data`/`opts` to {} (Job.fromJSON)."""
    d.token = None
    for name in rng.sample(["data", "opts"], rng.randint(1, 2)):
        if rng.random() < 0.5:
            d.drop(name)
        else:
            d.set(name, b"")
    d.opts = {}


@kind("good.flow")
def _good_flow(rng: random.Random, d: Draft) -> None:
    """A flow child (FlowProducer): `parentKey`, `parent` and `opts.parent`; the parent is planted
    by `generate` in `waiting-children` and must run once the child completes."""
    # Filled in by `generate`, which needs the queue key to spell the parent's key.


# Name


@kind("name.invalid_utf8")
def _name_invalid(rng: random.Random, d: Draft) -> None:
    d.name = _invalid_utf8(rng, d.pick([GOOD_NAME, ""]))
    _expect(d, Expect.FAIL, "name")


@kind("name.missing")
def _name_missing(rng: random.Random, d: Draft) -> None:
    if d.pick([True, False]):
        d.drop("name")
    else:
        d.name = b""
    _expect(d, Expect.FAIL, "name")


@kind("name.unknown")
def _name_unknown(rng: random.Random, d: Draft) -> None:
    unknown = d.pick([f"NoSuchJob{rng.randint(0, 999)}", GOOD_NAME.lower(), GOOD_NAME + " ", "中文Job"])
    d.name = unknown.encode()
    _expect(d, Expect.FAIL, "name", unknown)
    d.job_words = (unknown,)  # the architecture's rule: the reason names the job by its name


# Data


@kind("data.invalid_utf8")
def _data_invalid(rng: random.Random, d: Draft) -> None:
    d.data = b'{"fuzz":"' + _invalid_utf8(rng) + b'"}'
    d.token = None
    _expect(d, Expect.FAIL, "data")


@kind("data.not_json")
def _data_not_json(rng: random.Random, d: Draft) -> None:
    d.data = d.pick([b'{"a":', b"{'a':1}", b"undefined", b'{"a":1} x', b"{a:1}", b'"unterminated',
                         b"[1,]", b"\x00"])
    d.token = None
    _expect(d, Expect.FAIL, "data")


@kind("data.nan_infinity")
def _data_nan(rng: random.Random, d: Draft) -> None:
    """JSON.parse refuses NaN and Infinity; Python's json.loads would accept them."""
    d.data = d.pick([b'{"a":NaN}', b'{"a":Infinity}', b"[-Infinity]", b"NaN", b'{"fuzz":1,"n":NaN}'])
    d.token = None
    _expect(d, Expect.FAIL, "data")


@kind("data.deep")
def _data_deep(rng: random.Random, d: Draft) -> None:
    """Node 5.40.0 writes 1,200 levels through Queue.add and JSON.parse reads them back."""
    d.data = stringify({"fuzz": d.token}).encode()[:-1] + b',"deep":' + _deep_json(rng).encode() + b"}"
    _expect(d, Expect.EITHER, "data")


@kind("data.not_object")
def _data_not_object(rng: random.Random, d: Draft) -> None:
    d.data = d.pick([b"[1,2]", b'"text"', b"null", b"5", b"true", b"[]"])
    d.token = None
    _expect(d, Expect.EITHER, "data")


@kind("data.odd_but_valid")
def _data_odd(rng: random.Random, d: Draft) -> None:
    """Valid JSON at the edges: lone surrogates (JSON.stringify writes them escaped), huge numbers."""
    token = (d.token or "").encode()
    d.data = b'{"fuzz":"' + token + b'",' + d.pick([b'"s":"\\ud800"}', b'"n":' + b"9" * 5000 + b"}",
                                                      b'"n":1e400}', b'"k":"\\u0000"}'])
    _expect(d, Expect.EITHER, "data")


# Opts as a whole


@kind("opts.invalid_utf8")
def _opts_invalid(rng: random.Random, d: Draft) -> None:
    d.raw_opts = b'{"attempts":1,"x":"' + _invalid_utf8(rng) + b'"}'
    _expect(d, Expect.FAIL, "opts")


@kind("opts.not_json")
def _opts_not_json(rng: random.Random, d: Draft) -> None:
    d.raw_opts = d.pick([b'{"attempts":', b"{attempts:1}", b"nope", b'{"attempts":1}}', b"{'a':1}"])
    _expect(d, Expect.FAIL, "opts")


@kind("opts.not_object")
def _opts_not_object(rng: random.Random, d: Draft) -> None:
    d.raw_opts = d.pick([b"[1,2]", b'"attempts"', b"null", b"5", b"true", b"[]"])
    _expect(d, Expect.FAIL, "opts")


@kind("opts.nan")
def _opts_nan(rng: random.Random, d: Draft) -> None:
    d.raw_opts = d.pick([b'{"attempts":NaN}', b'{"attempts":1,"delay":Infinity}',
                             b'{"backoff":{"type":"fixed","delay":-Infinity}}'])
    _expect(d, Expect.FAIL, "opts")


@kind("opts.deep")
def _opts_deep(rng: random.Random, d: Draft) -> None:
    d.raw_opts = b'{"attempts":1,"meta":' + _deep_json(rng).encode() + b"}"
    _expect(d, Expect.EITHER, "opts")


# One option at a time: written through Queue.add (cjson) unless noted as a hand edit.


def _option(name: str, values: list[Any], raw: list[bytes] | None = None) -> Mutation:
    def mutate(rng: random.Random, d: Draft) -> None:
        pick = d.variant % (len(values) + len(raw or []))
        if pick < len(values) and values[pick] is not None:
            d.opts[name] = values[pick]
        else:
            # A hand edit: a member cjson cannot write (null, a number beyond a double's text).
            d.opts.pop(name, None)
            text = b"null" if pick < len(values) else (raw or [])[pick - len(values)]
            d.raw_opts = _with_member(d.opts, name, text)
        _expect(d, Expect.EITHER, f"opts.{name}", name)

    return mutate


def _with_member(opts: dict[str, Any], name: str, raw_value: bytes) -> bytes:
    """`opts` as cjson writes it, plus one member whose value text is written as given."""
    others = cjson_encode(opts)
    member = b'"' + name.encode() + b'":' + raw_value
    return b"{" + member + (b"," + others[1:] if others != b"{}" else b"}")


KINDS["opts.attempts"] = _option(
    "attempts", ["3", None, 2**64, -1, 1.5, 1e20, True, [], {}, "many"],
    raw=[b"18446744073709551616", b"1e400", b"-0"],
)
# Beyond msgpack's 64 bits (a hand edit: Queue.add would store the double 1.844674407371e+19).
KINDS["opts.attempts.huge"] = _option("attempts", [2**64], raw=[b"18446744073709551616", b"99999999999999999999999"])
KINDS["opts.backoff"] = _option("backoff", [
    "fixed", [1], {"type": 5}, {"type": "fixed", "delay": "x"}, {"type": "exponential", "delay": -5},
    {"delay": 100}, {"type": "fixed", "delay": 100, "jitter": 2}, {"type": "fixed", "jitter": "x"}, -1,
    {"type": "", "delay": 1}, {"type": "custom-strategy", "delay": 1}, 2**64, True,
])
KINDS["opts.delay"] = _option("delay", ["10", -5, 2**64, 1.5, [], True])
KINDS["opts.priority"] = _option("priority", ["1", -1, 2**21 + 1, 2**64, 0.5, {}])
KINDS["opts.removeOnComplete"] = _option(
    "removeOnComplete",
    [1e20, "x", [1], -1, 1.5, {"age": "x"}, {"count": -1}, {"count": 1e20}, {"age": 1, "count": "many"}, "true"],
    raw=[b"null", b"1e400"],
)
KINDS["opts.removeOnFail"] = _option(
    "removeOnFail",
    [1e20, "x", [1], -1, 1.5, {"age": "x"}, {"count": -1}, {"count": 1e20}, {"age": -1}, "false"],
    raw=[b"null"],
)
KINDS["opts.lifo"] = _option("lifo", ["yes", 1, {}, "false"])
KINDS["opts.jobId"] = _option("jobId", [5, {}, "someone-else", "", ["x"]])
KINDS["opts.parent"] = _option("parent", ["x", {"id": 5}, {"queue": "q"}, [], {"id": "p", "queue": 7}, True])
KINDS["opts.repeat"] = _option("repeat", ["every", {"every": "x"}, {"pattern": 5}, []])
KINDS["opts.stackTraceLimit"] = _option("stackTraceLimit", [-1, "x", 1e20])


@kind("opts.parent_flags")
def _opts_flags(rng: random.Random, d: Draft) -> None:
    """fpof / cpof / idof / rdof (Node's short names): not booleans, or several at once."""
    flags = ["fpof", "cpof", "idof", "rdof"]
    if d.pick([True, False]):
        d.opts[rng.choice(flags)] = rng.choice(["true", 1, {}, [1]])
    else:
        for flag in rng.sample(flags, rng.randint(2, 4)):
            d.opts[flag] = True
    _expect(d, Expect.EITHER, "opts", *flags, "failParentOnFailure", "continueParentOnFailure",
            "ignoreDependencyOnFailure", "removeDependencyOnFailure")


# Numeric fields of the hash


def _numeric(name: str, *, place: str | None = None) -> Mutation:
    def mutate(rng: random.Random, d: Draft) -> None:
        if place is not None:
            d.place = place
            d.extra.append((b"processedOn", str(d.now_ms - 60_000).encode()))
            if name != "ats":
                d.extra.append((b"ats", b"1"))
        d.set(name, d.pick(BAD_NUMBERS))
        _expect(d, Expect.EITHER, name)

    return mutate


for _field in ("timestamp", "delay", "priority", "atm", "attemptsMade", "ats", "stc", "stalledCounter",
               "processedOn", "finishedOn"):
    KINDS[f"{_field}.bad_number"] = _numeric(_field)
# The stall checker meets these first (HINCRBY stc on a non-integer fails half-way).
KINDS["stc.stalled_non_integer"] = _numeric("stc", place=STALLED)
KINDS["stalledCounter.stalled_non_integer"] = _numeric("stalledCounter", place=STALLED)


@kind("numbers.missing")
def _numbers_missing(rng: random.Random, d: Draft) -> None:
    missing = rng.sample(["timestamp", "delay", "priority"], rng.randint(1, 3))
    for name in missing:
        d.drop(name)
    _expect(d, Expect.EITHER, missing[0], *missing)


# Text and JSON fields left by earlier attempts


def _leftover(name: str, values: list[bytes], *, invalid_utf8: bool = True) -> Mutation:
    def mutate(rng: random.Random, d: Draft) -> None:
        variants: list[bytes | None] = [None, *values] if invalid_utf8 else list(values)
        value = d.pick(variants)  # None: invalid UTF-8
        d.set(name, _invalid_utf8(rng, "left") if value is None else value)
        _expect(d, Expect.EITHER, name)

    return mutate


KINDS["failedReason.odd"] = _leftover("failedReason", [b"x" * 100_000, b"", b"\x00"])
KINDS["stacktrace.odd"] = _leftover(
    "stacktrace", [b"not json", b'{"a":1}', b"[1,2]", b"null", b"[NaN]", _deep_json(random.Random(1)).encode(),
                   b'"a string"', b"[" + b",".join([b'"line"'] * 2000) + b"]"],
)
KINDS["returnvalue.odd"] = _leftover("returnvalue", [b"not json", b"NaN", _deep_json(random.Random(2)).encode()])
KINDS["progress.odd"] = _leftover(
    "progress", [b"not json", b"NaN", b"Infinity", b'"50%"', _deep_json(random.Random(3)).encode()],
)
KINDS["rjk.odd"] = _leftover("rjk", [b"no-such-scheduler", b"repeat:x:1", b"a:b:c"])


@kind("defa.present")
def _defa(rng: random.Random, d: Draft) -> None:
    """A deferred failure (BullMQ >= 5.53 stall checker): the job fails with that reason."""
    text = d.pick(["job stalled more than allowable limit", f"child {d.job_id.decode()} failed"])
    d.set("defa", text.encode())
    _expect(d, Expect.FAIL, "defa", text)
    d.job_words = (text,)


@kind("defa.invalid_utf8")
def _defa_invalid(rng: random.Random, d: Draft) -> None:
    d.set("defa", _invalid_utf8(rng, "job stalled "))
    _expect(d, Expect.FAIL, "defa", "job stalled")


# Flow fields: a child whose parent is malformed (no parent job is planted for these).


@kind("parent.malformed")
def _parent_malformed(rng: random.Random, d: Draft) -> None:
    parent = d.pick([
        b"not json", b"5", b'{"id":"\\ud800","queueKey":"q"}', b"[]", b"null", b'"p"', b'{"id":"p"}',
        b'{"queueKey":"q"}', b'{"id":5,"queueKey":"q"}',
        b'{"id":"p","queueKey":"q","x":' + _deep_json(rng).encode() + b"}", b'{"id":"p","queueKey":"q"',
        _invalid_utf8(rng, '{"id":"'), b"", b"true",
    ])
    d.extra += [(b"parentKey", b"nowhere:p"), (b"parent", parent)]
    _expect(d, Expect.EITHER, "parent")


@kind("parentKey.malformed")
def _parent_key_malformed(rng: random.Random, d: Draft) -> None:
    d.extra.append((b"parentKey", d.pick([b"no-colon", _invalid_utf8(rng, "q:"), b"trailing:", b""])))
    if rng.random() < 0.5:
        d.extra.append((b"parent", b'{"id":"p","queueKey":"nowhere"}'))
    _expect(d, Expect.EITHER, "parentKey", "parent")


# The id and the hash's own shape


@kind("id.invalid_utf8")
def _id_invalid(rng: random.Random, d: Draft) -> None:
    readable = d.job_id.split(b"-")[0].decode() + "-"
    d.job_id = readable.encode() + d.pick(INVALID_UTF8) + b"-x"
    d.opts.pop("jobId", None)
    _expect(d, Expect.EITHER, "id", "jobId", "job id")
    d.job_words = (readable,)


@kind("id.long")
def _id_long(rng: random.Random, d: Draft) -> None:
    d.job_id = d.job_id + b"-" + b"x" * d.pick([1_000, 10_000])
    d.opts.pop("jobId", None)
    _expect(d, Expect.EITHER, "id", "jobId")
    d.job_words = (d.job_id[:30].decode(),)


@kind("hash.unknown_field")
def _unknown_field(rng: random.Random, d: Draft) -> None:
    """Fields Node never writes: its reader ignores them, so they must not stop the job."""
    name, value = d.pick([(b"extra", b"\xff"), (b"\xff\xfe", b"value"), (b"deid", b""), (b"pb", b"\xff"),
                          (b"nrjid", b"value")])
    d.overrides[name] = value
    _expect(d, Expect.EITHER, name.decode("utf-8", "backslashreplace"))


# -- the cycle and the generator --------------------------------------------------------------

_BAD_KINDS = [k for k in KINDS if not k.startswith("good")]
_GOOD_KINDS = [k for k in KINDS if k.startswith("good")]


def _schedule() -> list[str]:
    """Every bad kind once, with a good kind after every third: about one good job in four."""
    out: list[str] = []
    good = 0
    for i, name in enumerate(_BAD_KINDS):
        out.append(name)
        if i % 3 == 2:
            out.append(_GOOD_KINDS[good % len(_GOOD_KINDS)])
            good += 1
    while good < len(_GOOD_KINDS):
        out.append(_GOOD_KINDS[good])
        good += 1
    return out


SCHEDULE = _schedule()


# Good jobs added to a batch of one bad kind, to see whether the bad ones disturb them.
WITNESS_KIND = "good"
WITNESS_BASE = 1_000_000


def generate_case(seed: int, index: int, now_ms: int, queue_key: str, *, kind_name: str | None = None) -> Case:
    """Case `index` of run `seed`; `queue_key` is `<prefix>:<queue>` (for flow parent keys)."""
    rng = random.Random(f"{seed}:{index}")
    name = kind_name or SCHEDULE[index % len(SCHEDULE)]
    draft = good_draft(rng, index, now_ms)
    draft.variant = index // len(SCHEDULE)
    KINDS[name](rng, draft)
    if name == "good.flow":
        return Case(seed, index, name, _flow(rng, draft, index, now_ms, queue_key))
    if draft.place == STALLED:
        # A job a worker fetched is no longer delayed/prioritized: the stall checker re-queues it in wait.
        draft.opts.pop("lifo", None)
    return Case(seed, index, name, (draft.finish(),))


def _flow(rng: random.Random, child: Draft, index: int, now_ms: int, queue_key: str) -> tuple[JobSpec, ...]:
    parent = good_draft(rng, index, now_ms, place=WAITING_CHILDREN)
    parent.job_id = f"fz{index:05d}-parent-{_uuid(rng)}".encode()
    parent.opts.pop("jobId", None)
    child.place = WAIT
    parent_id = parent.job_id.decode()
    flag = rng.choice([None, "fpof", "idof", "rdof"])
    link: dict[str, Any] = {"id": parent_id, "queueKey": queue_key}
    child.opts.pop("lifo", None)
    child.opts.pop("delay", None)
    child.opts.pop("priority", None)
    child.delay_ms = child.priority = 0
    child.opts["parent"] = {"id": parent_id, "queue": queue_key}
    if flag:
        child.opts[flag] = True
        link[flag] = True
    child.extra += [(b"parent", cjson_encode(link)), (b"parentKey", f"{queue_key}:{parent_id}".encode())]
    parent.children = (child.job_id,)
    return parent.finish(), child.finish()


def generate(seed: int, count: int, now_ms: int, queue_key: str) -> list[Case]:
    return [generate_case(seed, i, now_ms, queue_key) for i in range(count)]


def witness(seed: int, number: int, now_ms: int, queue_key: str) -> Case:
    """Good job `number` of the witnesses of run `seed` (indexes apart from the cases')."""
    return generate_case(seed, WITNESS_BASE + number, now_ms, queue_key, kind_name=WITNESS_KIND)


def is_good(kind_name: str) -> bool:
    return kind_name.startswith("good")

