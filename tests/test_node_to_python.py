"""A job enqueued by real Node bullmq 5.40.0 (node_fixture, Twenty's add semantics) is processed
by the Python worker, and Node reads the outcome. The full two-way matrix is in interop_tests/."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

import twenty_jobs
from interop_tests.node import arun_fixture
from twenty_jobs.runtime.registry import Registry

from .test_worker import burst


async def test_node_enqueued_twenty_job_is_processed_in_python_and_node_sees_the_result(
    registry: Registry, prefix: str, redis: aioredis.Redis
) -> None:
    seen: list[dict[str, Any]] = []

    @twenty_jobs.job(queue="workspace-queue", name="UpdateWorkspaceMemberEmailJob", registry=registry)
    async def handler(data: dict[str, Any], ctx: twenty_jobs.JobContext) -> dict[str, Any]:
        seen.append({"data": data, "id": ctx.job_id, "ws": ctx.workspace_id, "retry_limit": ctx.retry_limit})
        return {"handled": True}

    data = {"workspaceId": "ws-42", "nested": {"emoji": "✓ 日本", "n": [1, 2.5, None]}, "big": 9007199254740991}
    added = await arun_fixture("add", prefix=prefix, queue="workspace-queue",
                               name="UpdateWorkspaceMemberEmailJob", data=data, id="member-7", retry_limit=2)
    job_id = added["id"]
    assert job_id.startswith("member-7-")
    assert await burst(prefix, registry, ["workspace-queue"]) == 0
    assert seen == [{"data": data, "id": job_id, "ws": "ws-42", "retry_limit": 2}]
    view = await arun_fixture("inspect-job", prefix=prefix, queue="workspace-queue", id=job_id)
    assert view["state"] == "completed"
    assert view["returnvalue"] == {"handled": True}
    assert view["attemptsMade"] == 1


async def test_node_get_workers_counts_the_python_worker(registry: Registry, prefix: str, start_worker: Any) -> None:
    @twenty_jobs.job(queue="email-queue", name="EmailSenderJob", registry=registry)
    async def send(data: Any, ctx: Any) -> None:
        return None

    before = await arun_fixture("workers", prefix=prefix, queue="email-queue")
    assert before["count"] == 0
    await start_worker(["email-queue"])
    after = await arun_fixture("workers", prefix=prefix, queue="email-queue")
    assert after["count"] == 1
