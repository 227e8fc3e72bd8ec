"""OpenTelemetry metrics and spans under Twenty's own names (docs/twenty-queues.md, "Health and metrics").

Twenty's worker (BullMQDriver @ text 62108663571) emits, on the meter `twenty-server`:
* `job/completed` {queue, job_name, workspace_id?} on every worker `completed` event;
* `job/failed` {queue, job_name, error_type, workspace_id?} on every worker `failed` event, which
  BullMQ emits for each failed attempt, retried or not (so do we);
* `job/stalled` {queue} on every `stalled` event;
* `job/latency-ms` {queue, job_name, workspace_id?}: max(0, now - job.timestamp - job.delay) when
  the processor starts, in Twenty's JOB_DURATION_MS_BUCKET_BOUNDARIES;
* the observable gauges `twenty_queue_jobs_waiting_total` {queue} (Node's `queue.count()`) and
  `twenty_queue_jobs_by_state_total` {queue, state}.
A Grafana board built on Twenty's metrics therefore shows Python workers with no change.

Cost on the job hot path: the OpenTelemetry Python SDK spends about 13 µs per `add`/`record`, three
of them per job, which is a large share of a fast job. So every job is first aggregated here in
plain dicts (about 1 µs); the counters reach OpenTelemetry as observable counters read at
collection time, and `--metrics-port` renders Prometheus text straight from the same dicts (no SDK
needed). Only the latency histogram, which has no observable form, is recorded into the SDK per
job, and only when an SDK MeterProvider is installed. Nothing here calls Redis: the gauges read
the counts the heartbeat fetches every few seconds.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from twenty_jobs.runtime.context import workspace_id_of

if TYPE_CHECKING:
    from twenty_jobs.wire.counts import QueueSnapshot
    from twenty_jobs.wire.job import JobRecord as Job

METER_NAME = "twenty-server"
TRACER_NAME = "twenty-jobs"

JOB_COMPLETED = "job/completed"
JOB_FAILED = "job/failed"
JOB_STALLED = "job/stalled"
JOB_LATENCY_MS = "job/latency-ms"
QUEUE_WAITING_GAUGE = "twenty_queue_jobs_waiting_total"
QUEUE_BY_STATE_GAUGE = "twenty_queue_jobs_by_state_total"
# The states Twenty's gauge reports (`queue.getJobCounts('active','waiting','prioritized','delayed','failed')`).
GAUGE_STATES: tuple[str, ...] = ("active", "waiting", "prioritized", "delayed", "failed")

DESCRIPTIONS = {
    JOB_COMPLETED: "Jobs completed by the worker",
    JOB_FAILED: "Failed job attempts (retried or not)",
    JOB_STALLED: "Jobs found stalled and moved back to wait",
    JOB_LATENCY_MS: "Time a job waited in the queue before a worker started it",
    QUEUE_WAITING_GAUGE: "Current number of jobs waiting in queue",
    QUEUE_BY_STATE_GAUGE: "Current number of jobs in queue broken down by state",
}

# JOB_DURATION_MS_BUCKET_BOUNDARIES (metrics/constants/job-duration-ms-bucket-boundaries.constant.ts).
JOB_DURATION_MS_BUCKETS: tuple[float, ...] = (
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000,
)

# Attributes as a hashable tuple of (key, value) pairs, in Twenty's order.
Attrs = tuple[tuple[str, str], ...]


class QueueStatsSource(Protocol):
    """Where the gauges read queue counts (the heartbeat, refreshed every few seconds)."""

    def queue_stats(self) -> Mapping[str, QueueSnapshot]: ...


class Histogram:
    """Explicit-bucket histogram: counts[i] holds values in (bounds[i-1], bounds[i]], the last
    one everything above the largest bound (OpenTelemetry's and Prometheus' convention)."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(JOB_DURATION_MS_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def record(self, value: float) -> None:
        self.counts[bisect.bisect_left(JOB_DURATION_MS_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


class JobMetrics:
    """Twenty's job instruments, aggregated in dicts keyed by attributes (cumulative)."""

    def __init__(self) -> None:
        self.completed: dict[Attrs, int] = {}
        self.failed: dict[Attrs, int] = {}
        self.stalled: dict[Attrs, int] = {}
        self.latency: dict[Attrs, Histogram] = {}

    def record_latency(self, attrs: Attrs, value_ms: float) -> None:
        hist = self.latency.get(attrs)
        if hist is None:
            hist = self.latency[attrs] = Histogram()
        hist.record(value_ms)

    @staticmethod
    def bump(counter: dict[Attrs, int], attrs: Attrs) -> None:
        counter[attrs] = counter.get(attrs, 0) + 1


def job_attrs(queue: str, job: Job) -> Attrs:
    workspace_id = workspace_id_of(job.data)
    if workspace_id:
        return (("queue", queue), ("job_name", job.name), ("workspace_id", workspace_id))
    return (("queue", queue), ("job_name", job.name))


def failed_attrs(attrs: Attrs, error: BaseException | None) -> Attrs:
    # Node's `error.name` is the error's class name; the Python type name is the same idea.
    error_type = ("error_type", type(error).__name__ if error is not None else "Error")
    return (*attrs[:2], error_type, *attrs[2:])


# What job_started computed for the job the current asyncio task runs (attributes, span, context
# token). job_started and job_finished of one job run in the same task (the worker's processJob);
# a task may then run the next job, so an entry left behind by a job that never "finished" (moved
# to delayed or waiting-children by its handler) is closed when that task starts its next job.
_JOB: ContextVar[tuple[Attrs, trace.Span | None, Token[Context] | None] | None] = ContextVar(
    "twenty_jobs_job", default=None
)


def _is_real_meter_provider(provider: MeterProvider) -> bool:
    # The API's default is a proxy that forwards nowhere until an SDK provider is set.
    return not isinstance(provider, NoOpMeterProvider) and type(provider).__name__ != "_ProxyMeterProvider"


class OtelObserver:
    """A JobObserver recording Twenty's job metrics and one CONSUMER span per job."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        stats: QueueStatsSource | None = None,
    ) -> None:
        self.metrics = JobMetrics()
        self.stats = stats
        # One attributes tuple per series, made once (see _attrs_of).
        self._series: dict[tuple[str, str, str | None], Attrs] = {}
        tracers = tracer_provider or trace.get_tracer_provider()
        self.tracer = tracers.get_tracer(TRACER_NAME)
        # Spans cost a few microseconds per job even when nobody records them, so they are only
        # made when a real TracerProvider is installed before the worker starts (by
        # `opentelemetry-instrument`, or by a module loaded with --import).
        self.tracing = not isinstance(tracers, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        meters = meter_provider or metrics.get_meter_provider()
        self.exporting = _is_real_meter_provider(meters)
        self.latency: metrics.Histogram | None = None
        if self.exporting:
            self._register(meters.get_meter(METER_NAME))

    def _register(self, meter: metrics.Meter) -> None:
        for name, counter in ((JOB_COMPLETED, self.metrics.completed), (JOB_FAILED, self.metrics.failed),
                              (JOB_STALLED, self.metrics.stalled)):
            meter.create_observable_counter(name, callbacks=[_observe_counter(counter)], description=DESCRIPTIONS[name])
        self.latency = meter.create_histogram(
            JOB_LATENCY_MS, unit="ms", description=DESCRIPTIONS[JOB_LATENCY_MS],
            explicit_bucket_boundaries_advisory=list(JOB_DURATION_MS_BUCKETS),
        )
        if self.stats is not None:
            meter.create_observable_gauge(QUEUE_WAITING_GAUGE, callbacks=[self._observe_waiting],
                                          description=DESCRIPTIONS[QUEUE_WAITING_GAUGE])
            meter.create_observable_gauge(QUEUE_BY_STATE_GAUGE, callbacks=[self._observe_by_state],
                                          description=DESCRIPTIONS[QUEUE_BY_STATE_GAUGE])

    # -- JobObserver ------------------------------------------------------------------------------

    def job_started(self, queue: str, job: Job) -> None:
        if _JOB.get() is not None:
            self._close_current("moved")
        attrs = self._attrs_of(queue, job)
        latency = max(0, int(time.time() * 1000) - int(job.timestamp or 0) - int(job.delay or 0))
        self.metrics.record_latency(attrs, latency)
        if self.latency is not None:
            self.latency.record(latency, dict(attrs))
        if not self.tracing:
            _JOB.set((attrs, None, None))
            return
        span = self.tracer.start_span(
            f"process {job.name}",
            kind=SpanKind.CONSUMER,
            attributes={
                **dict(attrs),
                "job_id": str(job.id),
                "attempt": job.attempts_made + 1,
                "messaging.system": "bullmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": str(job.id),
            },
        )
        # Make it the current span so the handler's own spans (HTTP, SQL) become its children.
        _JOB.set((attrs, span, otel_context.attach(trace.set_span_in_context(span))))

    def job_finished(
        self, queue: str, job: Job, outcome: str, duration_ms: float, error: BaseException | None
    ) -> None:
        current = _JOB.get()
        attrs = current[0] if current is not None else self._attrs_of(queue, job)
        if outcome == "completed":
            JobMetrics.bump(self.metrics.completed, attrs)
        elif outcome in ("failed", "retrying"):
            JobMetrics.bump(self.metrics.failed, failed_attrs(attrs, error))
        self._close_current(outcome, error)

    def _attrs_of(self, queue: str, job: Job) -> Attrs:
        """`job_attrs`, the same tuple object for every job of a series: the metric dicts then find
        it by identity instead of comparing freshly built tuples element by element, which was most
        of this observer's cost per job."""
        key = (queue, job.name, workspace_id_of(job.data))
        attrs = self._series.get(key)
        if attrs is None:
            attrs = self._series[key] = job_attrs(queue, job)
        return attrs

    @staticmethod
    def _close_current(outcome: str, error: BaseException | None = None) -> None:
        current = _JOB.get()
        if current is None:
            return
        _JOB.set(None)
        _, span, token = current
        if span is not None:
            span.set_attribute("outcome", outcome)
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
        if token is not None:
            otel_context.detach(token)

    def job_stalled(self, queue: str, job_id: str) -> None:
        JobMetrics.bump(self.metrics.stalled, (("queue", queue),))

    # -- gauges (read at collection time, from the heartbeat's last counts) ------------------------

    def snapshots(self) -> Iterable[QueueSnapshot]:
        return list(self.stats.queue_stats().values()) if self.stats is not None else ()

    def _observe_waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attrs)) for attrs, value in waiting_points(self.snapshots())]

    def _observe_by_state(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attrs)) for attrs, value in by_state_points(self.snapshots())]


def _observe_counter(counter: dict[Attrs, int]) -> Any:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        # dict.copy() is atomic under the GIL: the SDK's reader thread may call this while the
        # event loop adds a key.
        return [Observation(value, dict(attrs)) for attrs, value in counter.copy().items()]

    return observe


def waiting_points(snapshots: Iterable[QueueSnapshot]) -> list[tuple[Attrs, int]]:
    return [((("queue", s.name),), s.count) for s in snapshots]


def by_state_points(snapshots: Iterable[QueueSnapshot]) -> list[tuple[Attrs, int]]:
    out: list[tuple[Attrs, int]] = []
    for s in snapshots:
        values = {"active": s.active, "waiting": s.waiting, "prioritized": s.prioritized,
                  "delayed": s.delayed, "failed": s.failed}
        out.extend(((("queue", s.name), ("state", state)), values[state]) for state in GAUGE_STATES)
    return out
