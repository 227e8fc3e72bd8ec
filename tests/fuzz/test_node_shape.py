"""The fuzz writer writes what Node bullmq 5.40.0 writes: the real Node fixture adds jobs to one
queue, the writer (the generator's own `Draft` path) writes the same jobs to another, and every
hash field, list, score, marker, counter and event must match."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from interop_tests.node import arun_fixture, fixture_installed
from tests.fuzz.cases import Draft
from tests.fuzz.node_writes import DELAYED, PRIORITIZED, WAIT, WAIT_LIFO, plant
from twenty_jobs.twenty.jsonjs import stringify
from twenty_jobs.wire.keys import QueueKeys

pytestmark = pytest.mark.skipif(not fixture_installed(), reason="node_fixture not installed (make install)")

# (name, data, opts as an app passes them to Queue.add, where Node puts the job)
JOBS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("Plain", {"a": 1}, {"attempts": 1}, WAIT),
    ("Lifo", "str", {"attempts": 0, "lifo": True, "jobId": "custom-1"}, WAIT_LIFO),
    ("Prio", {"a": 2}, {"attempts": 3, "priority": 5, "backoff": {"type": "exponential", "delay": 100, "jitter": 0.5},
                        "removeOnComplete": {"age": 10, "count": 5}, "removeOnFail": 7}, PRIORITIZED),
    ("Prio2", [1, None, True], {"attempts": 1, "priority": 5}, PRIORITIZED),
    ("Delayed", {}, {"attempts": 0, "delay": 60_000, "backoff": {"type": "fixed", "delay": 1000},
                     "removeOnComplete": True}, DELAYED),
    ("Odd", {"s": "a/b é\u2028\"\\", "n": 1e21, "f": 0.1, "big": 2**60},
     {"attempts": 2**64, "removeOnComplete": 1e20, "x": "a/b\n", "empty": [], "list": [1, 2.5],
      "big": 123456789012345678, "f": 0.30000000000000004, "u": "é😀"}, WAIT),
]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def numbers_kept(text: bytes) -> Any:
    """Parsed JSON whose numbers keep their exact text (member order does not matter: cjson's
    follows Lua's table order)."""
    return json.loads(text, parse_float=lambda t: ("number", t), parse_int=lambda t: ("number", t))


async def snapshot(client: aioredis.Redis, keys: QueueKeys, ids: list[bytes]) -> dict[str, Any]:
    events = await client.xrange(keys.events)
    hashes = {}
    for job_id in ids:
        stored = await client.hgetall(keys.job_prefix.encode() + job_id)
        stored[b"opts"] = numbers_kept(stored[b"opts"])
        hashes[job_id] = stored
    return {
        "hashes": hashes,
        "wait": await client.lrange(keys.wait, 0, -1),
        "prioritized": await client.zrange(keys.prioritized, 0, -1, withscores=True),
        "delayed": await client.zrange(keys.delayed, 0, -1, withscores=True),
        "marker": await client.zrange(keys.marker, 0, -1, withscores=True),
        "meta": await client.hgetall(keys.meta),
        "id": await client.get(keys.id),
        "pc": await client.get(keys.pc),
        "events": [{k: v for k, v in fields.items()} for _, fields in events],
    }


async def test_the_fuzz_writer_writes_jobs_as_node_bullmq_5_40_writes_them(
    raw: aioredis.Redis, prefix: str
) -> None:
    node, ours = QueueKeys(prefix, "node"), QueueKeys(prefix, "ours")
    ids: list[bytes] = []
    drafts: list[Draft] = []
    for name, data, opts, place in JOBS:
        # The fixture sends dicts and lists as JSON text and anything else as given.
        as_flag = data if isinstance(data, dict | list) else json.dumps(data)
        added = await arun_fixture("add-raw", queue="node", name=name, data=as_flag, opts=opts, prefix=prefix)
        job_id = str(added["id"]).encode()
        ids.append(job_id)
        timestamp = int(await raw.hget(node.job_prefix.encode() + job_id, "timestamp"))
        draft = Draft(job_id=job_id, token=None, data=stringify(data).encode(), opts=dict(opts), place=place,
                      now_ms=timestamp, name=name.encode())
        draft.priority = opts.get("priority", 0)
        draft.delay_ms = opts.get("delay", 0)
        drafts.append(draft)
    await plant(raw, ours, (d.finish().planted for d in drafts))

    theirs, mine = await snapshot(raw, node, ids), await snapshot(raw, ours, ids)
    for job_id in ids:
        assert mine["hashes"][job_id] == theirs["hashes"][job_id], job_id
    assert mine == theirs
    # Exact text where cjson differs from Python's json: escaped '/', %.14g numbers, [] as {}.
    odd_opts = await raw.hget(node.job_prefix.encode() + ids[-1], "opts")
    for text in (b'"a\\/b\\n"', b"1.844674407371e+19", b"1e+20", b'"empty":{}', b"1.2345678901235e+17"):
        assert text in odd_opts
