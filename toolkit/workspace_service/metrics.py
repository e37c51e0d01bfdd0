"""`GET /metrics` in Prometheus's format (the `prometheus` extra, prometheus-client).

Requests by route and status, their latency, how many are in flight, the
refusals by reason, and tasks by status: `tasks{status="queued"}` is the
signal an autoscaler scales workers on.
"""

import logging
from typing import Any

from .tasks.base import TaskBackend, TaskStoreUnavailable

log = logging.getLogger("workspace_service")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets (seconds): from a cached answer to a slow model call.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Methods counted by name; any other is "other": a method is any token a client
#: likes, and each would be a series kept for ever.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The service's metrics, in a registry of their own (not the global one)."""

    def __init__(self, tasks: TaskBackend | None) -> None:
        """Raises ImportError without prometheus-client."""
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
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight.dec()
        key = (method if method in METHODS else "other", route, status)
        series = self._series.get(key)
        if series is None:  # labels() costs a lock and a lookup: once per series
            series = self._series[key] = (self.requests.labels(key[0], route, str(status)),
                                          self.latency.labels(route))
        series[0].inc()
        series[1].observe(seconds)

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

        try:
            counts = self.tasks.counts()
        except TaskStoreUnavailable as exc:  # the request metrics are still worth a scrape
            log.warning("task store unavailable: %s (no tasks metric in this scrape)", exc)
            return
        family = GaugeMetricFamily("tasks", "Tasks by status (queued: waiting for a worker)",
                                   labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family
