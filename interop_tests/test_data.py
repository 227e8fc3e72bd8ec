"""Job data and Twenty's job options cross the Node/Python boundary unchanged, in both directions."""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis

from interop_tests.conftest import Node
from interop_tests.pyworker import PythonWorker, Recorder, compact_json, recording_handler
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.twenty.options import Backoff

QUEUE = "webhook-queue"  # a Twenty queue: priority 2 by default
NAME = "CallWebhookJob"
UUID_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Values whose JSON text is the same whether Node's JSON.stringify or Python's compact
# json.dumps(ensure_ascii=False) writes it: so "byte for byte" can be asserted on both sides.
DATA: dict[str, Any] = {
    "workspaceId": "20202020-1c25-4d02-bf25-6aeccf7ea419",
    "zKeyFirst": "keys keep insertion order, not sorted",
    "name": "person.created",
    "nested": {"level1": {"level2": {"level3": [1, [2, [3, {"deep": True}]]]}}, "empty": {}, "list": []},
    "unicode": "héllo wörld · 日本語 · 中文 · 🚀👨‍👩‍👧 · 𝔘𝔫𝔦",
    "separators": "line\u2028para\u2029end",
    "controls": "nul\u0000 tab\t nl\n cr\r bs\b ff\f esc\u001b us\u001f del\u007f",
    "quotes": 'say "hi" \\ back\\slash </script>',
    "maxSafe": 2**53 - 1,
    "minSafe": -(2**53 - 1),
    "bigEven": 2**53 + 2,  # exactly representable as a double
    "int32": 2**31,
    "zero": 0,
    "half": 0.5,
    "price": 1234.25,
    "null": None,
    "flags": [True, False, None],
    "events": [
        {"recordId": "r1", "properties": {"after": {"firstName": "Zoë", "lastName": "李"}, "before": None}},
        {"recordId": "r2", "properties": {"updatedFields": ["a", "b"], "diff": {}}},
    ],
}


async def test_node_data_arrives_in_python_byte_for_byte(
    node: Node, redis_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    added = await node("add", queue=QUEUE, name=NAME, data=DATA, id="ws-1", retry_limit=2)
    stored = await redis_client.hget(f"{prefix}:{QUEUE}:{added['id']}", "data")
    assert stored == compact_json(DATA)  # what Node wrote

    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {NAME: recording_handler(recorder)}):
        (record,) = await recorder.wait_for(1)

    assert record["id"] == added["id"]
    assert record["data"] == DATA
    assert list(record["data"]) == list(DATA)  # key order kept
    assert record["dataJson"] == stored  # the handler sees exactly what Node stored
    # Twenty's job options, as Node's BullMQDriver.add wrote them.
    assert UUID_SUFFIX.search(record["id"]) and record["id"].startswith("ws-1-")
    assert record["opts"]["attempts"] == 3
    assert record["opts"]["priority"] == 2
    assert record["opts"]["removeOnComplete"] == {"age": 14400, "count": 1000}
    assert record["opts"]["removeOnFail"] == {"age": 604800, "count": 1000}
    assert record["attemptsMade"] == 0


async def test_python_data_arrives_in_node_byte_for_byte(
    node: Node, producer: Producer, prefix: str, redis_client: aioredis.Redis
) -> None:
    job_id = await producer.add(
        QUEUE, NAME, DATA, id="ws-2", retry_limit=3, backoff=Backoff("exponential", 5000, 0.5)
    )
    assert job_id is not None

    async with node.worker(QUEUE, max_jobs=1) as worker:
        (record,) = await worker.await_records(1)
        summary = await worker.await_exit()

    assert summary["processed"] == 1
    assert record["id"] == job_id
    assert record["data"] == DATA
    assert list(record["data"]) == list(DATA)
    assert record["dataJson"] == compact_json(DATA)  # Node's JSON.stringify, byte for byte
    assert record["name"] == NAME
    assert record["priority"] == 2
    assert record["attemptsMade"] == 0
    opts = record["opts"]
    assert opts["jobId"] == job_id and job_id.startswith("ws-2-") and UUID_SUFFIX.search(job_id)
    assert opts["attempts"] == 4
    assert opts["priority"] == 2
    assert opts["backoff"] == {"type": "exponential", "delay": 5000, "jitter": 0.5}
    assert opts["removeOnComplete"] == {"age": 14400, "count": 1000}
    assert opts["removeOnFail"] == {"age": 604800, "count": 1000}

    view = await node("inspect-job", queue=QUEUE, id=job_id)
    assert view["state"] == "completed"
    assert view["returnvalue"]["processedBy"] == "node"


async def test_null_and_empty_data_both_ways(node: Node, producer: Producer, redis_url: str, prefix: str) -> None:
    # Twenty's crons pass `data: undefined`, which BullMQ stores as {}; Python's None does the same.
    py_id = await producer.add(QUEUE, "PyNoData", None)
    async with node.worker(QUEUE, max_jobs=1) as worker:
        (record,) = await worker.await_records(1)
        await worker.await_exit()
    assert record["id"] == py_id and record["data"] == {} and record["dataJson"] == "{}"

    await node("add-raw", queue=QUEUE, name="NodeNull", data=None, opts={})
    await node("add-raw", queue=QUEUE, name="NodeList", data=[None, [], {}], opts={})
    recorder = Recorder()
    handler = recording_handler(recorder)
    async with PythonWorker(redis_url, prefix, QUEUE, {"NodeNull": handler, "NodeList": handler}):
        records = await recorder.wait_for(2)
    by_name = {r["name"]: r for r in records}
    assert by_name["NodeNull"]["dataJson"] == "{}"  # fixture's --data default: {} (JSON null is not sent)
    assert by_name["NodeList"]["data"] == [None, [], {}]


async def test_ints_beyond_2_53_are_rounded_by_node_as_javascript_does(
    node: Node, producer: Producer, prefix: str, redis_client: aioredis.Redis
) -> None:
    # Python writes exact big ints; Node reads them as doubles. Ids and counters must be strings.
    data = {"big": 2**64, "odd": 2**53 + 1, "asString": str(2**64)}
    job_id = await producer.add(QUEUE, NAME, data)
    assert await redis_client.hget(f"{prefix}:{QUEUE}:{job_id}", "data") == (
        '{"big":18446744073709551616,"odd":9007199254740993,"asString":"18446744073709551616"}'
    )
    async with node.worker(QUEUE, max_jobs=1) as worker:
        (record,) = await worker.await_records(1)
        await worker.await_exit()
    assert record["dataJson"] == '{"big":18446744073709552000,"odd":9007199254740992,"asString":"18446744073709551616"}'
