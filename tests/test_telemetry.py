"""OpenTelemetry under Twenty's names: the instruments a real worker records, the spans, the queue
gauges, and the Prometheus text `--metrics-port` serves (with `/healthz`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import RunningWorker, wait_until
from twenty_jobs.observability.health import Heartbeat
from twenty_jobs.observability.http import MetricsServer, metric_names, prometheus_name, render_prometheus
from twenty_jobs.observability.telemetry import JOB_DURATION_MS_BUCKETS, OtelObserver
from twenty_jobs.observability.worker_services import build_worker_services
from twenty_jobs.ops.snapshot import QueueSnapshot
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job

QUEUE = "workflow-queue"
WS = "20202020-1c25-4d02-bf25-6aeccf7ea419"
StartWorker = Callable[..., Awaitable[RunningWorker]]


class Capture:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                assert sm.scope.name == "twenty-server"
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def sums(self, name: str) -> dict[frozenset[tuple[str, Any]], float]:
        return {frozenset((p.attributes or {}).items()): p.value for p in self.points(name)}


def register_steps(registry: Registry) -> None:
    @job(QUEUE, "RunWorkflowJob", registry=registry)
    async def run(data: Any, ctx: JobContext) -> str:
        if data.get("fail"):
            raise ValueError("step exploded")
        return "ok"


async def test_a_worker_records_twentys_job_instruments_and_a_span_per_job(
    start_worker: StartWorker, registry: Registry, producer: Producer
) -> None:
    register_steps(registry)
    cap = Capture()
    observer = OtelObserver(meter_provider=cap.meters, tracer_provider=cap.tracers)
    await start_worker([QUEUE], observers=[observer])
    await producer.add(QUEUE, "RunWorkflowJob", {"workspaceId": WS})
    await producer.add(QUEUE, "RunWorkflowJob", {"fail": True}, retry_limit=1)
    await wait_until(lambda: len(cap.spans.get_finished_spans()) == 3)

    assert cap.sums("job/completed") == {
        frozenset({("queue", QUEUE), ("job_name", "RunWorkflowJob"), ("workspace_id", WS)}): 1
    }
    # Like Twenty's `failed` listener: every failed attempt counts, retried or not.
    assert cap.sums("job/failed") == {
        frozenset({("queue", QUEUE), ("job_name", "RunWorkflowJob"), ("error_type", "ValueError")}): 2
    }
    latency = cap.points("job/latency-ms")
    assert sum(p.count for p in latency) == 3
    assert tuple(latency[0].explicit_bounds) == JOB_DURATION_MS_BUCKETS

    spans = sorted(cap.spans.get_finished_spans(), key=lambda s: s.start_time or 0)
    ok = spans[0]
    assert ok.name == "process RunWorkflowJob" and ok.kind == SpanKind.CONSUMER
    attrs = dict(ok.attributes or {})
    assert attrs["queue"] == QUEUE and attrs["job_name"] == "RunWorkflowJob" and attrs["workspace_id"] == WS
    assert attrs["job_id"] and attrs["outcome"] == "completed"
    failed = [s for s in spans if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 2 and {dict(s.attributes or {})["outcome"] for s in failed} == {"retrying", "failed"}
    assert failed[0].events[0].name == "exception"


async def test_the_handlers_own_spans_are_children_of_the_job_span(
    start_worker: StartWorker, registry: Registry, producer: Producer
) -> None:
    cap = Capture()
    tracer = cap.tracers.get_tracer("handler")

    @job(QUEUE, "RunWorkflowJob", registry=registry)
    async def run(data: Any, ctx: JobContext) -> None:
        with tracer.start_as_current_span("http call"):
            await asyncio.sleep(0)

    await start_worker([QUEUE], observers=[OtelObserver(meter_provider=cap.meters, tracer_provider=cap.tracers)])
    await producer.add(QUEUE, "RunWorkflowJob", {})
    await wait_until(lambda: len(cap.spans.get_finished_spans()) == 2)
    child, parent = cap.spans.get_finished_spans()
    assert child.name == "http call" and child.parent is not None
    assert child.parent.span_id == parent.context.span_id


class Stats:
    def queue_stats(self) -> dict[str, QueueSnapshot]:
        return {"email-queue": QueueSnapshot("email-queue", waiting=2, prioritized=3, active=1, delayed=4, failed=5,
                                             paused_jobs=1, waiting_children=0)}


def test_stalled_jobs_and_queue_gauges_are_exported_with_twentys_names() -> None:
    cap = Capture()
    observer = OtelObserver(meter_provider=cap.meters, stats=Stats())
    observer.job_stalled(QUEUE, "42")
    assert cap.sums("job/stalled") == {frozenset({("queue", QUEUE)}): 1}
    # Node's queue.count(): waiting + paused + delayed + prioritized + waiting-children.
    assert cap.sums("twenty_queue_jobs_waiting_total") == {frozenset({("queue", "email-queue")}): 10}
    by_state = cap.sums("twenty_queue_jobs_by_state_total")
    assert by_state == {
        frozenset({("queue", "email-queue"), ("state", state)}): value
        for state, value in {"active": 1, "waiting": 2, "prioritized": 3, "delayed": 4, "failed": 5}.items()
    }


class FakeJob:
    def __init__(self, name: str = "J", data: Any = None, job_id: str = "1", waited_ms: int = 0) -> None:
        self.name = name
        self.id = job_id
        self.data = data if data is not None else {}
        self.timestamp = int(time.time() * 1000) - waited_ms
        self.delay = 0
        self.attemptsMade = 0


def test_prometheus_text_uses_the_names_twentys_exporter_produces() -> None:
    assert prometheus_name("job/completed") == "job_completed"
    assert prometheus_name("job/latency-ms") == "job_latency_ms"
    observer = OtelObserver(stats=Stats())
    quoted = FakeJob('say "hi"\n')
    for job_ in (quoted, quoted):
        observer.job_started(QUEUE, job_)
        observer.job_finished(QUEUE, job_, "completed", 1.0, None)
    slow = FakeJob(waited_ms=120)
    observer.job_started(QUEUE, slow)
    observer.job_finished(QUEUE, slow, "failed", 1.0, ValueError("x"))
    observer.job_stalled(QUEUE, "1")
    text = render_prometheus(observer.metrics, Stats().queue_stats().values())

    assert set(metric_names(text)) == {
        "job_completed_total", "job_failed_total", "job_stalled_total",
        "job_latency_ms_bucket", "job_latency_ms_sum", "job_latency_ms_count",
        "twenty_queue_jobs_waiting_total", "twenty_queue_jobs_by_state_total",
    }
    assert "# TYPE job_completed_total counter" in text
    assert "# TYPE job_latency_ms histogram" in text
    assert "# TYPE twenty_queue_jobs_waiting_total gauge" in text
    scope = 'otel_scope_name="twenty-server"'
    assert f'job_completed_total{{queue="{QUEUE}",job_name="say \\"hi\\"\\n",{scope}}} 2' in text
    assert f'job_failed_total{{queue="{QUEUE}",job_name="J",error_type="ValueError",{scope}}} 1' in text
    assert f'job_latency_ms_bucket{{queue="{QUEUE}",job_name="J",{scope},le="100"}} 0' in text
    assert f'job_latency_ms_bucket{{queue="{QUEUE}",job_name="J",{scope},le="250"}} 1' in text
    assert f'job_latency_ms_bucket{{queue="{QUEUE}",job_name="J",{scope},le="+Inf"}} 1' in text
    assert f'job_latency_ms_count{{queue="{QUEUE}",job_name="J",{scope}}} 1' in text
    assert f'twenty_queue_jobs_waiting_total{{queue="email-queue",{scope}}} 10' in text
    assert f'twenty_queue_jobs_by_state_total{{queue="email-queue",state="failed",{scope}}} 5' in text
    assert render_prometheus(None) == "# no registered metrics\n"


def test_the_scrape_and_an_opentelemetry_sdk_see_the_same_numbers() -> None:
    cap = Capture()
    observer = OtelObserver(meter_provider=cap.meters)
    for i in range(5):
        job_ = FakeJob(data={"workspaceId": WS}, job_id=str(i), waited_ms=60 * i)
        observer.job_started(QUEUE, job_)
        observer.job_finished(QUEUE, job_, "completed" if i % 2 else "retrying", 1.0, KeyError("k"))
    attrs = (("queue", QUEUE), ("job_name", "J"), ("workspace_id", WS))
    assert cap.sums("job/completed") == {frozenset(attrs): observer.metrics.completed[attrs]} == {frozenset(attrs): 2}
    assert sum(cap.sums("job/failed").values()) == 3
    (sdk_hist,) = cap.points("job/latency-ms")
    ours = observer.metrics.latency[attrs]
    assert list(sdk_hist.bucket_counts) == ours.counts and sdk_hist.count == ours.count == 5


async def test_metrics_port_serves_prometheus_text_and_healthz_for_a_running_worker(
    start_worker: StartWorker, registry: Registry, producer: Producer
) -> None:
    register_steps(registry)
    built = build_worker_services(metrics_port=0, metrics_host="127.0.0.1")
    observers, services = built.observers, built.services
    heartbeat, server = services
    assert isinstance(heartbeat, Heartbeat) and isinstance(server, MetricsServer)
    heartbeat.interval_s = 0.2
    await start_worker([QUEUE], observers=observers, services=services)
    await producer.add(QUEUE, "RunWorkflowJob", {"workspaceId": WS})
    await wait_until(lambda: heartbeat.tallies[QUEUE].completed == 1)
    await wait_until(lambda: QUEUE in heartbeat.queue_stats())

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        metrics = await http.get("/metrics")
        health = await http.get("/healthz")
        missing = await http.get("/nope")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = metrics.text
    assert f'job_completed_total{{queue="{QUEUE}",job_name="RunWorkflowJob",workspace_id="{WS}",' in body
    assert f'twenty_queue_jobs_by_state_total{{queue="{QUEUE}",state="waiting",' in body
    assert "job_latency_ms_count" in body
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert missing.status_code == 404

    async def redis_gone() -> None:
        raise ConnectionError("Connection refused")

    heartbeat.tick = redis_gone  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        async def down() -> bool:
            return (await http.get("/healthz")).status_code == 503

        await wait_until(down, timeout=5)  # after 3 missed heartbeats
        problems = (await http.get("/healthz")).json()["problems"]
    assert "cannot reach Redis" in problems[0] and "Connection refused" in problems[0]


def test_without_an_sdk_nothing_is_exported_but_the_scrape_still_counts() -> None:
    observer = OtelObserver()  # the API's default providers: no SDK installed
    assert not observer.exporting and not observer.tracing
    job_ = FakeJob(data={"workspaceId": WS})
    observer.job_started(QUEUE, job_)
    observer.job_finished(QUEUE, job_, "failed", 1.0, RuntimeError("x"))
    assert observer.metrics.failed == {
        (("queue", QUEUE), ("job_name", "J"), ("error_type", "RuntimeError"), ("workspace_id", WS)): 1
    }


async def test_a_job_that_never_finishes_does_not_become_the_parent_of_the_next_one() -> None:
    # A handler that moves its job to delayed (DelayedError) gets no job_finished; the worker's
    # slot task then runs the next job.
    cap = Capture()
    observer = OtelObserver(meter_provider=cap.meters, tracer_provider=cap.tracers)
    first, second = FakeJob("Moved", job_id="1"), FakeJob("Next", job_id="2")
    observer.job_started(QUEUE, first)
    observer.job_started(QUEUE, second)
    observer.job_finished(QUEUE, second, "completed", 1.0, None)
    moved, done = cap.spans.get_finished_spans()
    assert dict(moved.attributes or {})["outcome"] == "moved"
    assert done.name == "process Next" and done.parent is None
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


def test_a_metrics_port_in_use_is_a_clear_error_before_the_worker_starts() -> None:
    import socket

    from twenty_jobs.errors import ConfigError

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            build_worker_services(metrics_port=port, metrics_host="127.0.0.1")
    finally:
        taken.close()
