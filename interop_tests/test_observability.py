"""What Twenty's admin pages and bull-board read, written by Python workers: progress, updated
data, job logs, worker metrics (getMetrics) and the worker list (getWorkers)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from interop_tests.conftest import Node, wait_for_job_state
from interop_tests.pyworker import PythonWorker, Recorder, recording_handler
from twenty_jobs.runtime.context import JobContext

QUEUE = "workflow-queue"


async def test_progress_logs_and_updated_data_written_in_python_are_seen_by_node(
    node: Node, redis_url: str, prefix: str
) -> None:
    job_id = (await node("add", queue=QUEUE, name="Steps", data={"step": 0, "ws": "w1"}, retry_limit=1))["id"]
    halfway = asyncio.Event()
    inspected = asyncio.Event()

    async def action(data: Any, ctx: JobContext) -> Any:
        if ctx.attempts_made == 0:
            await ctx.update_progress(50)
            await ctx.log("first line")
            await ctx.log("second line é 🚀")
            await ctx.update_data({"step": 1, "ws": "w1", "note": "résumé"})
            halfway.set()
            await inspected.wait()
            raise RuntimeError("fail once so the retry shows the updated data")
        await ctx.update_progress({"step": 2, "of": 2, "label": "done ✓"})
        await ctx.log("retry line")
        return {"seen": data}

    recorder = Recorder()
    async with PythonWorker(redis_url, prefix, QUEUE, {"Steps": recording_handler(recorder, action=action)}):
        await asyncio.wait_for(halfway.wait(), 10)
        live = await node("inspect-job", queue=QUEUE, id=job_id)  # while the job is still active
        inspected.set()
        await recorder.wait_for(2)
        final = await wait_for_job_state(node, QUEUE, job_id, "completed")

    assert live["state"] == "active"
    assert live["progress"] == 50
    assert live["data"] == {"step": 1, "ws": "w1", "note": "résumé"}
    assert live["logs"] == {"logs": ["first line", "second line é 🚀"], "count": 2}

    assert recorder.records[1]["data"] == {"step": 1, "ws": "w1", "note": "résumé"}  # the retry saw it
    assert final["progress"] == {"step": 2, "of": 2, "label": "done ✓"}
    assert final["data"] == {"step": 1, "ws": "w1", "note": "résumé"}
    assert final["logs"] == {"logs": ["first line", "second line é 🚀", "retry line"], "count": 3}
    assert final["returnvalue"] == {"seen": {"step": 1, "ws": "w1", "note": "résumé"}}


async def test_python_worker_metrics_are_read_by_node_get_metrics(node: Node, redis_url: str, prefix: str) -> None:
    for i in range(5):
        await node("add", queue=QUEUE, name="Ok", data={"i": i})
    for i in range(3):
        await node("add", queue=QUEUE, name="Bad", data={"i": i})
    recorder = Recorder()
    handlers = {"Ok": recording_handler(recorder), "Bad": recording_handler(recorder, fail_times=1)}
    async with PythonWorker(redis_url, prefix, QUEUE, handlers):
        await recorder.wait_for(8)
        await _until_counts(node, completed=5, failed=3)

    completed = await node("metrics", queue=QUEUE, type="completed")
    failed = await node("metrics", queue=QUEUE, type="failed")
    assert completed["meta"]["count"] == 5
    assert failed["meta"]["count"] == 3

    # A Node worker with Twenty's metrics option adds to the same counters.
    for i in range(2):
        await node("add", queue=QUEUE, name="Ok", data={"i": 10 + i})
    async with node.worker(QUEUE, metrics=True, max_jobs=2) as worker:
        await worker.await_exit()
    assert (await node("metrics", queue=QUEUE, type="completed"))["meta"]["count"] == 7


async def test_node_get_workers_counts_python_workers(node: Node, redis_url: str, prefix: str) -> None:
    node_name = f"{prefix}:{base64.b64encode(QUEUE.encode()).decode()}"
    # A named worker's connection, which getWorkers() counts and twenty-jobs tells apart from Node's.
    python_name = f"{node_name}:w:twenty-jobs"
    assert (await node("workers", queue=QUEUE))["count"] == 0
    async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(Recorder())}):
        seen = await node("workers", queue=QUEUE)
        assert seen == {"count": 1, "workers": [python_name]}
        async with node.worker(QUEUE):
            both = await node("workers", queue=QUEUE)
            assert both["count"] == 2 and sorted(both["workers"]) == sorted([python_name, node_name])
        async with PythonWorker(redis_url, prefix, QUEUE, {"Job": recording_handler(Recorder())}):
            assert (await node("workers", queue=QUEUE))["count"] == 2
    # Stopped workers drop out (Twenty's health page then reports the queue as having no worker).
    assert (await node("workers", queue=QUEUE))["count"] == 0


async def _until_counts(node: Node, timeout: float = 10.0, **want: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        counts = await node("counts", queue=QUEUE)
        if all(counts[k] == v for k, v in want.items()):
            return
        assert loop.time() < deadline, f"counts {counts} never reached {want}"
        await asyncio.sleep(0.05)
