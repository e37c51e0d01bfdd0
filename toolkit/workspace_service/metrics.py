"""`GET /metrics` in Prometheus's format (the `prometheus` extra, prometheus-client).

Requests by route and status, their latency, how many are in flight, the
refusals by reason, and tasks by status: `tasks{status="queued"}` is the
signal an autoscaler scales workers on.
"""

import importlib.util
from typing import Any

from .tasks.base import TaskBackend

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets (seconds): from a cached answer to a slow model call.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def available() -> bool:
    """Whether prometheus-client is installed (the `prometheus` extra)."""
    return importlib.util.find_spec("prometheus_client") is not None


class Metrics:
    """The service's metrics, in a registry of their own (not the global one)."""

    def __init__(self, tasks: TaskBackend | None) -> None:
        import prometheus_client as prom  # ~45 ms: only when metrics are served

        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("http_requests", "Requests answered",
                                     ["method", "route", "status"], registry=self.registry)
        self.latency = prom.Histogram("http_request_duration_seconds",
                                      "Time to answer a request", ["route"], buckets=BUCKETS,
                                      registry=self.registry)
        self.in_flight = prom.Gauge("http_requests_in_flight", "Requests being answered",
                                    registry=self.registry)
        self.rejections = prom.Counter("http_rejections", "Requests refused by a limit",
                                       ["reason"], registry=self.registry)
        if tasks is not None:
            self.registry.register(_TaskCollector(tasks))

    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight.dec()
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def render(self) -> bytes:
        return self._prom.generate_latest(self.registry)


class _TaskCollector:
    """Reads the task counts from the store at each scrape (they change without us)."""

    def __init__(self, tasks: TaskBackend) -> None:
        self.tasks = tasks

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("tasks", "Tasks by status (queued: waiting for a worker)",
                                   labels=["status"])
        for status, count in self.tasks.counts().items():
            family.add_metric([status], count)
        yield family
