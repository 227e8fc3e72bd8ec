"""What every `twenty-jobs work` process runs beside its queue workers: the heartbeat (read by
`check`/`status`), the OpenTelemetry observer, and on request the `/metrics` + `/healthz` server.

Assembled here, not in the CLI, so any program that embeds the worker gets the same set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twenty_jobs.observability.health import Heartbeat
from twenty_jobs.observability.http import MetricsServer
from twenty_jobs.observability.telemetry import OtelObserver
from twenty_jobs.runtime.worker import JobObserver, WorkerService


@dataclass(slots=True)
class WorkerServices:
    """The observers and services to put in a WorkerConfig."""

    observers: list[JobObserver] = field(default_factory=list)
    services: list[WorkerService] = field(default_factory=list)


def build_worker_services(metrics_port: int | None = None, *, metrics_host: str = "0.0.0.0") -> WorkerServices:
    """The heartbeat (observer + service), the OpenTelemetry observer, and with a port the
    `/metrics` + `/healthz` server.

    Call it after the handler modules are imported: the observer exports to OpenTelemetry (and
    makes spans) only if an SDK provider is installed by then. A port that cannot be bound raises
    ConfigError here, before any worker starts."""
    heartbeat = Heartbeat()
    telemetry = OtelObserver(stats=heartbeat)
    built = WorkerServices(observers=[heartbeat, telemetry], services=[heartbeat])
    if metrics_port is not None:
        server = MetricsServer(metrics_port, host=metrics_host, job_metrics=telemetry.metrics, health=heartbeat)
        server.bind()
        built.services.append(server)
    return built
