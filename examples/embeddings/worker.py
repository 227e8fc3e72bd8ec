"""The Python worker of the embeddings example: serves the `embeddings` queue that the Node app
(producer.js) fills, with the same options the app's own Node worker would have.

    twenty-jobs work --import examples.embeddings.worker --no-builtin-jobs

`embed` (model.py) is a stand-in for a real model; the job plumbing around it is what the example
shows: a blocking handler on a
thread with progress, a failure that is retried with the app's backoff, an async handler for the
batch job, a rate limit shared with the app's Node workers, and the app's retention.
"""

from __future__ import annotations

from pydantic import BaseModel

import twenty_jobs
from examples.embeddings.model import embed

QUEUE = "embeddings"

twenty_jobs.queue_settings(
    QUEUE,
    concurrency=4,
    # At most 50 documents a second over every worker of the queue, Node or Python (an API quota).
    limiter=twenty_jobs.Limiter(max=50, duration_ms=1000),
    # What the app's Queue sets as defaultJobOptions: applied to jobs Python adds
    # (Producer, `twenty-jobs enqueue --import examples.embeddings.worker embeddings ...`).
    job_defaults=twenty_jobs.JobDefaults(
        attempts=3,
        backoff=twenty_jobs.Backoff("exponential", 1000),
        remove_on_complete=twenty_jobs.KeepJobs(count=100),
        remove_on_fail=twenty_jobs.KeepJobs(count=500),
    ),
)


class Document(BaseModel):
    id: str
    text: str
    failOnce: bool = False


class Batch(BaseModel):
    texts: list[str]


@twenty_jobs.job(queue=QUEUE, name="embed-document")
def embed_document(doc: Document, ctx: twenty_jobs.BlockingJobContext) -> dict[str, object]:
    """CPU-bound work in a plain `def`: it runs on a thread, so the job's lock keeps being renewed."""
    ctx.update_progress(10)
    if doc.failOnce and ctx.attempt == 1:
        raise RuntimeError("embedding service unavailable (simulated); retried with the app's backoff")
    vector = embed(doc.text)
    ctx.update_progress(100)
    return {"id": doc.id, "vector": vector}


@twenty_jobs.job(queue=QUEUE, name="embed-batch")
async def embed_batch(batch: Batch, ctx: twenty_jobs.JobContext) -> dict[str, object]:
    """Many texts in one job, with its progress (percent) visible in bull-board as it goes."""
    vectors = []
    for done, text in enumerate(batch.texts, start=1):
        vectors.append(embed(text))
        await ctx.update_progress(round(100 * done / len(batch.texts)))
    return {"count": len(vectors), "vectors": vectors}
