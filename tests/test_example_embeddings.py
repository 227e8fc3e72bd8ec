"""The embeddings example (examples/embeddings/) runs as its README says: the Node app's producer
fills the queue with its own default job options, `twenty-jobs work --import
examples.embeddings.worker --burst` serves it, and the results, progress, retry and retention
are what a Node worker of the app would have left."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import redis.asyncio as aioredis

from examples.embeddings.model import embed
from interop_tests.node import FIXTURE_DIR, fixture_installed

from .conftest import REDIS_URL
from .test_cli import REPO, cli
from .test_rate_limit import bursts

QUEUE = "embeddings"
DOCUMENTS = 120


def run_producer(prefix: str) -> dict[str, Any]:
    assert fixture_installed(), f"run `make install` ({FIXTURE_DIR} has no node_modules)"
    out = subprocess.run(
        ["node", "examples/embeddings/producer.js", "--documents", str(DOCUMENTS), "--fail-once", "doc-3"],
        cwd=REPO, env={**os.environ, "REDIS_URL": REDIS_URL, "TJ_PREFIX": prefix},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def test_the_embeddings_example_runs_end_to_end(prefix: str, redis: aioredis.Redis) -> None:
    added = await asyncio.to_thread(run_producer, prefix)
    work = await asyncio.to_thread(
        cli, "work", "--import", "examples.embeddings.worker", "--no-builtin-jobs", "--burst", "--prefix", prefix,
        "--log-level", "WARNING",
    )
    assert work.returncode == 0, work.stderr
    key = f"{prefix}:{QUEUE}"
    # Every job ran to completion; the app's retention keeps the last 100 completed.
    stream = await redis.xrange(f"{key}:events")
    assert sum(1 for _, f in stream if f.get("event") == "completed") == DOCUMENTS + 1
    for state in ("wait", "active", "failed", "delayed"):
        assert await redis.exists(f"{key}:{state}") == 0, state
    kept = await redis.zrange(f"{key}:completed", 0, -1)
    assert len(kept) == 100
    assert sum([await redis.exists(f"{key}:{job_id}") for job_id in added["documents"]]) == 99  # + the batch

    batch = await redis.hgetall(f"{key}:{added['batch']}")
    assert json.loads(batch["progress"]) == 100
    assert json.loads(batch["returnvalue"]) == {
        "count": 4, "vectors": [embed(t) for t in ("alpha", "beta", "gamma", "delta")]}

    # doc-3 failed once and was retried after the app's 1 s backoff: it finished last, so it is kept.
    doc3 = await redis.hgetall(f"{key}:{added['documents'][3]}")
    assert doc3["atm"] == "2" and "embedding service unavailable" in doc3["stacktrace"]
    assert json.loads(doc3["returnvalue"]) == {"id": "doc-3", "vector": embed("document number 3")}
    assert json.loads(doc3["progress"]) == 100
    # The limiter (50 a second) held for the jobs still there to show when they started.
    started = [float(await redis.hget(f"{key}:{job_id}", "processedOn") or 0) for job_id in kept]
    assert max(len(w) for w in bursts(started, 1000)) <= 50
