"""CallWebhookJob is kind to receivers: one HTTP client with keep-alive per worker process and a
cap on concurrent requests per host (jobs/delivery.py), safe with the SSRF guard (a kept-alive
connection never carries another host name: jobs/http_pool.py). Real Redis, a real stdlib HTTP
server with a listen backlog of 5 (tests/jobs_support/small_receiver.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.jobs_support.fixtures import *  # noqa: F403  (fixtures)
from tests.jobs_support.fixtures import REDIS_URL, job_hash, job_logs
from tests.jobs_support.small_receiver import SmallReceiver
from twenty_jobs.errors import StartupError
from twenty_jobs.jobs import delivery
from twenty_jobs.jobs.http_pool import PinnedPoolTransport
from twenty_jobs.jobs.outbound import ssl_context
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.worker import TwentyWorker, WorkerConfig

Q = "webhook-queue"
JOBS = 3
PAYLOADS = 20  # Twenty's chunk of CallWebhookJob payloads


def payloads(url_for: Any, job: int) -> list[dict[str, Any]]:
    return [
        {"targetUrl": url_for(job, i), "eventName": "person.created",
         "objectMetadata": {"id": "om-1", "nameSingular": "person"}, "workspaceId": "ws-1",
         "webhookId": f"wh-{job}", "eventDate": "2026-11-30T12:00:00.000Z", "record": {"job": job, "i": i},
         "secret": "whsec-kind"}
        for i in range(PAYLOADS)
    ]


async def run_jobs(producer: Producer, prefix: str, url_for: Any, *, concurrency: int = JOBS) -> list[str]:
    """Add JOBS CallWebhookJob jobs and run them all at once (one worker, `concurrency` slots)."""
    ids = []
    for job in range(JOBS):
        job_id = await producer.add(Q, "CallWebhookJob", payloads(url_for, job), retry_limit=3)
        assert job_id is not None
        ids.append(job_id)
    config = WorkerConfig(redis_url=REDIS_URL, prefix=prefix, queues=[Q], burst=True, grace_s=5,
                          install_signal_handlers=False, concurrency=concurrency)
    assert await asyncio.wait_for(TwentyWorker(config).run(), 60) == 0
    return ids


async def assert_each_delivered_once_without_retry(prefix: str, ids: list[str], receiver: SmallReceiver) -> None:
    assert len(receiver.seen.bodies) == len(set(receiver.seen.bodies)) == JOBS * PAYLOADS
    for job_id in ids:
        done = await job_hash(prefix, Q, job_id)
        assert done["atm"] == "1", f"job {job_id} needed {done['atm']} attempts"  # no connection reset, no retry
        assert done["returnvalue"]["delivered"] == PAYLOADS
        assert await job_logs(prefix, Q, job_id) == []  # no failed payload on any attempt


async def test_three_jobs_against_a_backlog_5_receiver_reuse_at_most_5_connections(
    jobs_env: None, producer: Producer, prefix: str
) -> None:
    with SmallReceiver() as receiver:
        ids = await run_jobs(producer, prefix, lambda job, i: receiver.url(f"/hook/{job}"))
    await assert_each_delivered_once_without_retry(prefix, ids, receiver)
    # Before: a client per job, 20 payloads at once: 60 connections, resets, retries.
    assert receiver.seen.accepted <= delivery.DEFAULT_MAX_CONNECTIONS_PER_HOST


async def test_keep_alive_and_the_cap_hold_in_safe_mode(
    jobs_env: None, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "true")
    monkeypatch.setenv("OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", "127.0.0.1")
    monkeypatch.setenv("WEBHOOK_MAX_CONNECTIONS_PER_HOST", "2")
    with SmallReceiver() as receiver:
        ids = await run_jobs(producer, prefix, lambda job, i: receiver.url(f"/hook/{job}"))
    await assert_each_delivered_once_without_retry(prefix, ids, receiver)
    assert receiver.seen.accepted <= 2


async def test_in_safe_mode_a_kept_alive_connection_never_carries_another_host_name(
    jobs_env: None, producer: Producer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two names for one address, both allowed: each gets connections of its own (a TLS session
    # verified for one name must never carry a request for the other).
    monkeypatch.setenv("OUTBOUND_HTTP_SAFE_MODE_ENABLED", "true")
    monkeypatch.setenv("OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS", "127.0.0.1,localhost")
    with SmallReceiver() as receiver:
        names = ("127.0.0.1", "localhost")
        ids = await run_jobs(producer, prefix, lambda job, i: receiver.url(f"/hook/{job}", host=names[i % 2]))
    await assert_each_delivered_once_without_retry(prefix, ids, receiver)
    hosts = receiver.seen.hosts_per_connection
    assert all(len(names_seen) == 1 for names_seen in hosts.values()), hosts
    assert {name.split(":")[0] for names_seen in hosts.values() for name in names_seen} == set(names)
    assert sum(receiver.seen.per_connection.values()) == JOBS * PAYLOADS
    assert max(receiver.seen.per_connection.values()) > 1  # connections were reused


async def test_one_client_per_worker_process_closed_at_shutdown(
    jobs_env: None, producer: Producer, prefix: str
) -> None:
    config = WorkerConfig(redis_url=REDIS_URL, prefix=prefix, queues=[Q], install_signal_handlers=False, grace_s=5)
    worker = TwentyWorker(config)
    task = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(worker.started.wait(), 10)
    assert worker.context is not None
    opened = worker.context.resource(delivery.RESOURCE, delivery.Deliveries)
    with SmallReceiver() as receiver:
        for job in range(2):
            await producer.add(Q, "CallWebhookJob", payloads(lambda j, i: receiver.url("/hook"), job))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(receiver.seen.bodies) < 2 * PAYLOADS:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        assert worker.context.resource(delivery.RESOURCE, delivery.Deliveries) is opened  # the same client
        worker.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
    assert opened.client.is_closed
    assert delivery.RESOURCE not in worker.context.resources


async def test_a_bad_per_host_cap_stops_the_worker_start_naming_the_variable(
    jobs_env: None, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_CONNECTIONS_PER_HOST", "0")
    config = WorkerConfig(redis_url=REDIS_URL, prefix=prefix, queues=[Q], install_signal_handlers=False)
    with pytest.raises(StartupError, match="WEBHOOK_MAX_CONNECTIONS_PER_HOST"):
        await TwentyWorker(config).run()


async def test_the_per_host_cap_is_shared_by_all_jobs_of_the_process() -> None:
    limiter = delivery.HostLimiter(per_host=2)
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    async def hold(host: str) -> None:
        async with limiter.slot(host):
            running[host] = running.get(host, 0) + 1
            most[host] = max(most.get(host, 0), running[host])
            await asyncio.sleep(0.01)
            running[host] -= 1

    await asyncio.gather(*(hold(host) for host in ["a.example"] * 10 + ["b.example"] * 10))
    assert most == {"a.example": 2, "b.example": 2}


async def test_pools_are_bounded_the_least_recently_used_idle_one_is_closed() -> None:
    transport = PinnedPoolTransport(verify=ssl_context(), keepalive_per_pool=1, max_pools=2)
    with SmallReceiver() as receiver:
        async with httpx.AsyncClient(transport=transport) as client:
            for name in ("one.example", "two.example", "three.example", "two.example"):
                response = await client.post(receiver.url("/"), content=b"{}", headers={"Host": name})
                assert response.status_code == 200
                assert transport.pool_count <= 2
    assert receiver.seen.accepted == 3  # "two" reused its connection; "one" was closed for "three"
