"""`parse_job_hash` (twenty_jobs/wire/job.py): every malformed field fails with a MalformedJob that
names the job and the field; what Node bullmq 5.40.0 writes parses (docs/fuzz.md)."""

from __future__ import annotations

import json

import pytest

from twenty_jobs.wire.job import MalformedJob, parse_job_hash

JOB_ID = "fz-17-3f1e"

# A hash exactly as Node bullmq 5.40.0's Queue.add wrote it (read back from Redis, docs/fuzz.md).
NODE_HASH = {
    "name": "CallWebhookJob",
    "data": '{"workspaceId":"w1"}',
    "opts": '{"removeOnFail":{"age":604800,"count":1000},"jobId":"abc-6834f96f","removeOnComplete":'
            '{"age":14400,"count":1000},"priority":2,"attempts":1}',
    "timestamp": "1796052790592",
    "delay": "0",
    "priority": "2",
}


def surrogate(raw: bytes) -> str:
    """Bytes as the worker decodes a reply: invalid UTF-8 kept as surrogate escapes."""
    return raw.decode("utf-8", "surrogateescape")


def parse_with(**fields: str | None) -> None:
    stored = dict(NODE_HASH)
    for key, value in fields.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    parse_job_hash(JOB_ID, stored)


def opts_with(**members: object) -> str:
    return json.dumps({"attempts": 1, **members})


def test_what_node_writes_parses() -> None:
    record = parse_job_hash("abc-6834f96f", NODE_HASH)
    assert (record.name, record.data, record.priority) == ("CallWebhookJob", {"workspaceId": "w1"}, 2)
    assert record.opts.attempts == 1
    assert record.opts.remove_on_complete == {"age": 14400, "count": 1000}
    assert record.workspace_id == "w1"


def test_what_node_leaves_after_an_attempt_and_in_a_flow_parses() -> None:
    record = parse_job_hash(JOB_ID, {
        **NODE_HASH, "atm": "1", "ats": "2", "stc": "0", "stalledCounter": "1", "processedOn": "1796052875693",
        "failedReason": "boom", "stacktrace": '["Error: boom\\n    at x"]', "progress": '{"half":true}',
        "opts": '{"fpof":true,"parent":{"id":"p1","queue":"bull:q"},"attempts":0}',
        "parent": '{"id":"p1","queueKey":"bull:q","fpof":true}', "parentKey": "bull:q:p1",
    })
    assert (record.attempts_made, record.attempts_started, record.stalled_counter) == (1, 2, 0)
    assert record.parent == {"id": "p1", "queueKey": "bull:q", "fpof": True}
    assert record.opts.fail_parent_on_failure is True
    assert record.stacktrace == ["Error: boom\n    at x"]


def test_missing_or_empty_data_and_opts_default_to_an_empty_object_as_in_node() -> None:
    record = parse_job_hash(JOB_ID, {"name": "N", "data": "", "opts": ""})
    assert (record.data, record.opts.raw) == ({}, {})


def test_numbers_javascript_writes_for_timestamps_parse() -> None:
    record = parse_job_hash(JOB_ID, {**NODE_HASH, "delay": "3.0", "timestamp": "1.7e+12"})
    assert (record.delay, record.timestamp) == (3, 1_700_000_000_000)


# (field, fields to store, word the message must contain for the field)
MALFORMED: list[tuple[str, dict[str, str | None], str]] = [
    ("name missing", {"name": None}, "'name'"),
    ("name empty", {"name": ""}, "'name'"),
    ("name invalid UTF-8", {"name": surrogate(b"Call\xffJob")}, "'name'"),
    ("data invalid UTF-8", {"data": surrogate(b'{"a":"\xc3("}')}, "'data'"),
    ("data not JSON", {"data": '{"a":'}, "'data'"),
    ("data NaN", {"data": '{"a":NaN}'}, "'data'"),
    ("data Infinity", {"data": "[-Infinity]"}, "'data'"),
    ("data nested too deep", {"data": "[" * 100_000 + "]" * 100_000}, "'data'"),
    ("opts invalid UTF-8", {"opts": surrogate(b'{"x":"\xfe"}')}, "'opts'"),
    ("opts not JSON", {"opts": "{attempts:1}"}, "'opts'"),
    ("opts an array", {"opts": "[1,2]"}, "'opts'"),
    ("opts null", {"opts": "null"}, "'opts'"),
    ("opts NaN", {"opts": '{"attempts":NaN}'}, "'opts'"),
    ("attempts a string", {"opts": opts_with(attempts="3")}, "'opts.attempts'"),
    ("attempts 2**64", {"opts": opts_with(attempts=2**64)}, "'opts.attempts'"),
    ("attempts as cjson writes 2**64", {"opts": '{"attempts":1.844674407371e+19}'}, "'opts.attempts'"),
    ("attempts negative", {"opts": opts_with(attempts=-1)}, "'opts.attempts'"),
    ("backoff a string", {"opts": opts_with(backoff="fixed")}, "'opts.backoff'"),
    ("backoff type not a string", {"opts": opts_with(backoff={"type": 5})}, "'opts.backoff.type'"),
    ("backoff delay a string", {"opts": opts_with(backoff={"type": "fixed", "delay": "x"})}, "'opts.backoff.delay'"),
    ("backoff jitter above 1", {"opts": opts_with(backoff={"type": "fixed", "jitter": 2})}, "'opts.backoff.jitter'"),
    ("removeOnComplete 1e20", {"opts": opts_with(removeOnComplete=1e20)}, "'opts.removeOnComplete'"),
    ("removeOnComplete a string", {"opts": opts_with(removeOnComplete="x")}, "'opts.removeOnComplete'"),
    ("removeOnComplete an array", {"opts": opts_with(removeOnComplete=[1])}, "'opts.removeOnComplete'"),
    ("removeOnFail age a string", {"opts": opts_with(removeOnFail={"age": "x"})}, "'opts.removeOnFail.age'"),
    ("fpof not a boolean", {"opts": opts_with(fpof="true")}, "'opts.fpof'"),
    ("priority above BullMQ's limit", {"opts": opts_with(priority=2**21 + 1)}, "'opts.priority'"),
    ("opts.parent a string", {"opts": opts_with(parent="x")}, "'opts.parent'"),
    ("opts.parent without queue", {"opts": opts_with(parent={"id": "p"})}, "'opts.parent'"),
    ("timestamp not a number", {"timestamp": "abc"}, "'timestamp'"),
    ("timestamp in Arabic-Indic digits", {"timestamp": "١٢"}, "'timestamp'"),
    ("delay with an underscore", {"delay": "1_000"}, "'delay'"),
    ("priority negative", {"priority": "-5"}, "'priority'"),
    ("processedOn Infinity", {"processedOn": "Infinity"}, "'processedOn'"),
    ("finishedOn beyond 2**53", {"finishedOn": "99999999999999999999999"}, "'finishedOn'"),
    ("atm a float", {"atm": "1.5"}, "'atm'"),
    # HINCRBY (atm, ats, stc) refuses anything but Redis's own integer text.
    ("atm 3.0", {"atm": "3.0"}, "'atm'"),
    ("atm 1e+21", {"atm": "1e+21"}, "'atm'"),
    ("ats with a plus sign", {"ats": "+7"}, "'ats'"),
    ("stc with a space", {"stc": " 12"}, "'stc'"),
    ("stc with a leading zero", {"stc": "007"}, "'stc'"),
    ("atm 00", {"atm": "00"}, "'atm'"),
    ("ats in Arabic-Indic digits", {"ats": "١"}, "'ats'"),
    ("attemptsMade not a number", {"attemptsMade": "NaN"}, "'attemptsMade'"),
    ("stalledCounter a float", {"stalledCounter": "1.5"}, "'stalledCounter'"),
    ("failedReason invalid UTF-8", {"failedReason": surrogate(b"boom \xff")}, "'failedReason'"),
    ("defa invalid UTF-8", {"defa": surrogate(b"stalled \xff")}, "'defa'"),
    ("rjk invalid UTF-8", {"rjk": surrogate(b"sched\xc3(")}, "'rjk'"),
    ("progress not JSON", {"progress": "50%"}, "'progress'"),
    ("progress NaN", {"progress": "NaN"}, "'progress'"),
    ("stacktrace invalid UTF-8", {"stacktrace": surrogate(b'["\xff"]')}, "'stacktrace'"),
    ("returnvalue invalid UTF-8", {"returnvalue": surrogate(b'"\xff"')}, "'returnvalue'"),
    ("parent not JSON", {"parent": "not json", "parentKey": "bull:q:p"}, "'parent'"),
    ("parent a number", {"parent": "5", "parentKey": "bull:q:p"}, "'parent'"),
    ("parent without queueKey", {"parent": '{"id":"p"}', "parentKey": "bull:q:p"}, "'parent'"),
    ("parent id a number", {"parent": '{"id":5,"queueKey":"bull:q"}', "parentKey": "bull:q:5"}, "'parent'"),
    # The finishing Lua decodes any `parent` that is there and indexes it: JSON null, `true` or an
    # empty text stop it half-way (found by `make fuzz FUZZ_SEED=424242`, case 338).
    ("parent JSON null", {"parent": "null", "parentKey": "bull:q:p"}, "'parent'"),
    ("parent true", {"parent": "true", "parentKey": "bull:q:p"}, "'parent'"),
    ("parent empty", {"parent": "", "parentKey": "bull:q:p"}, "'parent'"),
    # The finishing Lua decodes `parent` with cjson, which refuses these (docs/fuzz.md).
    ("parent with a lone surrogate", {"parent": '{"id":"\\ud800","queueKey":"bull:q"}', "parentKey": "bull:q:p"},
     "'parent'"),
    ("parent with a nested member",
     {"parent": '{"id":"p","queueKey":"bull:q","x":' + "[" * 900 + "]" * 900 + "}", "parentKey": "bull:q:p"},
     "'parent'"),
    # Without `parent`, the Lua takes the parent's id after the last ':' of parentKey.
    ("parentKey without a colon", {"parentKey": "no-colon"}, "'parentKey'"),
    ("parentKey without an id", {"parentKey": "bull:q:"}, "'parentKey'"),
    ("parentKey invalid UTF-8", {"parentKey": surrogate(b"bull:q:\xff")}, "'parentKey'"),
]


@pytest.mark.parametrize(("case", "fields", "field_word"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_malformed_field_fails_with_a_message_naming_the_job_and_the_field(
    case: str, fields: dict[str, str | None], field_word: str
) -> None:
    with pytest.raises(MalformedJob) as caught:
        parse_with(**fields)
    message = str(caught.value)
    assert JOB_ID in message
    assert field_word in message
    assert len(message) < 400  # one line a person can read, not the whole value


def test_an_id_that_is_not_utf8_is_named_with_its_bytes_escaped() -> None:
    with pytest.raises(MalformedJob) as caught:
        parse_job_hash(surrogate(b"fz-17-\xff"), NODE_HASH)
    assert caught.value.field == "id"
    assert "job fz-17-\\xff " in str(caught.value)


def test_the_message_names_the_job_by_its_name_too_and_escapes_invalid_bytes() -> None:
    with pytest.raises(MalformedJob) as caught:
        parse_with(name=surrogate(b"Bad\xffName"))
    assert str(caught.value).startswith(f"job {JOB_ID} cannot be run: field 'name'")
    with pytest.raises(MalformedJob) as caught:
        parse_with(data="{")
    assert str(caught.value).startswith(f"job {JOB_ID} ('CallWebhookJob') cannot be run: field 'data'")
