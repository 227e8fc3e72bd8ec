"""The embeddings example (examples/embeddings/) runs as the README's "Serving another BullMQ
application" says, commands as pasted: the Node app's producer fills the queue with its own
default job options, `twenty-jobs work --import examples.embeddings.worker --burst` serves it, and
the results, progress, retry and retention are what a Node worker of the app would have left;
`twenty-jobs enqueue --import` adds a job with the app's defaults."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from examples.embeddings.model import embed
from interop_tests.node import FIXTURE_DIR, fixture_installed

from .test_cli import REPO
from .test_rate_limit import bursts
from .test_readme_examples import env_for, run_shell, shell_lines

QUEUE = "embeddings"
DOCUMENTS = 120  # as in the README's command


async def test_the_embeddings_example_runs_as_the_readme_says(prefix: str, redis: aioredis.Redis) -> None:
    assert fixture_installed(), f"run `make install` ({FIXTURE_DIR} has no node_modules)"
    produce, work, enqueue = shell_lines("node examples/embeddings/producer.js")
    env = env_for(prefix)
    produced = await asyncio.to_thread(run_shell, produce, REPO, env)
    assert produced.returncode == 0, produced.stderr
    added = json.loads(produced.stdout)
    assert len(added["documents"]) == DOCUMENTS
    served = await asyncio.to_thread(run_shell, work, REPO, env)
    assert served.returncode == 0, served.stderr

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

    # From the shell, a job gets the app's default job options the module declares.
    enqueued = await asyncio.to_thread(run_shell, enqueue, REPO, env)
    assert enqueued.returncode == 0, enqueued.stderr
    opts = json.loads(await redis.hget(f"{key}:{enqueued.stdout.strip()}", "opts") or "{}")
    assert opts["attempts"] == 3 and opts["backoff"] == {"type": "exponential", "delay": 1000}
    assert opts["removeOnComplete"] == {"count": 100} and opts["removeOnFail"] == {"count": 500}
