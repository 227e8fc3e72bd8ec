"""`twenty-jobs work --metrics-port P`: Prometheus text on `/metrics`, a probe on `/healthz`, and
the job counts of every queue under the prefix as JSON on `/queues`.

The text follows `@opentelemetry/exporter-prometheus`, the exporter Twenty's server uses
(`PrometheusExporter({port: 9464})`): characters outside `[a-zA-Z0-9_]` become `_`, counters get
`_total`, no unit suffix, and an `otel_scope_name` label. So `job/completed` is scraped as
`job_completed_total`, `job/latency-ms` as `job_latency_ms_bucket/_sum/_count`: the series
Twenty's own workers expose. It is rendered from the observer's in-process aggregates
(`telemetry.JobMetrics`), so serving it needs neither the OpenTelemetry SDK nor a Prometheus
client library.

The server is plain asyncio: three GET routes, one response per connection. `/queues` is answered
by whatever the process wires in (`twenty_jobs.ops.queues.QueueStatsEndpoint` for `work`), so
this module reads no queue itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from twenty_jobs.errors import ConfigError
from twenty_jobs.observability.telemetry import (
    DESCRIPTIONS,
    JOB_COMPLETED,
    JOB_DURATION_MS_BUCKETS,
    JOB_FAILED,
    JOB_LATENCY_MS,
    JOB_STALLED,
    METER_NAME,
    QUEUE_BY_STATE_GAUGE,
    QUEUE_WAITING_GAUGE,
    Attrs,
    JobMetrics,
    by_state_points,
    waiting_points,
)

if TYPE_CHECKING:
    from twenty_jobs.observability.heartbeat import Heartbeat
    from twenty_jobs.runtime.worker import TwentyWorker
    from twenty_jobs.wire.counts import QueueSnapshot

log = logging.getLogger("twenty_jobs.observability.http")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
SCOPE: Attrs = (("otel_scope_name", METER_NAME),)

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"_{2,}")


def prometheus_name(name: str) -> str:
    """OpenTelemetry instrument name -> Prometheus metric name (the JS exporter's rule)."""
    out = _UNDERSCORES.sub("_", _INVALID.sub("_", name))
    return f"_{out}" if out[:1].isdigit() else out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_value(value: str) -> str:
    return _escape(value).replace('"', '\\"')


def _labels(*groups: Attrs) -> str:
    pairs = [f'{prometheus_name(k)}="{_label_value(v)}"' for group in groups for k, v in group]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer():
            return str(int(value))
    return str(value)


def _family(lines: list[str], otel_name: str, kind: str, suffix: str = "") -> str:
    name = prometheus_name(otel_name) + suffix
    lines.append(f"# HELP {name} {_escape(DESCRIPTIONS[otel_name])}")
    lines.append(f"# TYPE {name} {kind}")
    return name


def render_prometheus(job_metrics: JobMetrics | None, snapshots: Iterable[QueueSnapshot] = ()) -> str:
    """The Prometheus text exposition (format 0.0.4) of Twenty's job metrics and queue gauges."""
    lines: list[str] = []
    if job_metrics is not None:
        for otel_name, counter in ((JOB_COMPLETED, job_metrics.completed), (JOB_FAILED, job_metrics.failed),
                                   (JOB_STALLED, job_metrics.stalled)):
            points = counter.copy()
            if points:
                name = _family(lines, otel_name, "counter", "_total")
                lines.extend(f"{name}{_labels(attrs, SCOPE)} {value}" for attrs, value in points.items())
        histograms = job_metrics.latency.copy()
        if histograms:
            name = _family(lines, JOB_LATENCY_MS, "histogram")
            bounds = [*(_number(float(b)) for b in JOB_DURATION_MS_BUCKETS), "+Inf"]
            for attrs, hist in histograms.items():
                cumulative = 0
                for bound, count in zip(bounds, list(hist.counts), strict=True):
                    cumulative += count
                    lines.append(f"{name}_bucket{_labels(attrs, SCOPE, (('le', bound),))} {cumulative}")
                lines.append(f"{name}_sum{_labels(attrs, SCOPE)} {_number(hist.sum)}")
                lines.append(f"{name}_count{_labels(attrs, SCOPE)} {hist.count}")
    snaps = list(snapshots)
    if snaps:
        for otel_name, gauge in ((QUEUE_WAITING_GAUGE, waiting_points(snaps)),
                                 (QUEUE_BY_STATE_GAUGE, by_state_points(snaps))):
            name = _family(lines, otel_name, "gauge")
            lines.extend(f"{name}{_labels(attrs, SCOPE)} {value}" for attrs, value in gauge)
    if not lines:
        return "# no registered metrics\n"
    return "\n".join(lines) + "\n"


QueuesDocument = Callable[[], Awaitable[Any]]
"""What `GET /queues` answers: a coroutine function returning a JSON-able document."""


class MetricsServer:
    """A WorkerService serving `/metrics` (Prometheus text), `/healthz` (this process's health) and,
    when given `queues`, `/queues` (queue stats as JSON)."""

    def __init__(
        self,
        port: int,
        *,
        host: str = "0.0.0.0",
        job_metrics: JobMetrics | None = None,
        health: Heartbeat | None = None,
        queues: QueuesDocument | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.job_metrics = job_metrics
        self.health = health
        self.queues = queues
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None

    def bind(self) -> None:
        """Take the port now, so a port in use is a one-line error before any worker starts
        (port 0 picks a free one, then `self.port` tells which)."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])

    async def start(self, worker: TwentyWorker | None = None) -> None:
        self.bind()
        self._server = await asyncio.start_server(self._serve, sock=self._sock, limit=MAX_REQUEST_BYTES)
        routes = "/metrics, /healthz and /queues" if self.queues is not None else "/metrics and /healthz"
        log.info("serving %s on http://%s:%d", routes, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path == "/metrics":
            snapshots = self.health.queue_stats().values() if self.health is not None else ()
            return 200, PROMETHEUS_CONTENT_TYPE, render_prometheus(self.job_metrics, snapshots).encode()
        if path == "/healthz":
            if self.health is None:
                return 200, "application/json", b'{"status":"ok","problems":[]}\n'
            state = self.health.local_health()
            return (200 if state.ok else 503), "application/json", (json.dumps(state.as_dict()) + "\n").encode()
        if path == "/queues" and self.queues is not None:
            try:
                document = await asyncio.wait_for(self.queues(), REQUEST_TIMEOUT_S)
            except Exception as exc:  # Redis away or slow: say so, the scraper retries
                log.warning("GET /queues failed: %s", str(exc) or type(exc).__name__)
                return 503, "application/json", (json.dumps({"error": str(exc) or type(exc).__name__}) + "\n").encode()
            return 200, "application/json", (json.dumps(document) + "\n").encode()
        routes = "/metrics, /healthz or /queues" if self.queues is not None else "/metrics or /healthz"
        return 404, "text/plain", f"not found: try {routes}\n".encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET\n"
            else:
                status, ctype, body = await self.respond(path)
            writer.write(_response(status, ctype, b"" if method == "HEAD" else body, len(body)))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics endpoint failed")
            with contextlib.suppress(Exception):
                writer.write(_response(500, "text/plain", b"internal error\n", 15))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _response(status: int, content_type: str, body: bytes, length: int) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def metric_names(text: str) -> Iterable[str]:
    """The metric names in a Prometheus exposition (for tests and `doctor`-style checks)."""
    for line in text.splitlines():
        if line and not line.startswith("#"):
            yield re.split(r"[{ ]", line, maxsplit=1)[0]
