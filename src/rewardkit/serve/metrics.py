"""Prometheus metrics of one server (own registry, so several apps in one process never share counters)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _powers_of_two_up_to(limit: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < limit:
        buckets.append(float(size))
        size *= 2
    return tuple(buckets) + (float(limit),)


class ServeMetrics:
    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int, max_batch_tokens: int):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rewardkit_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("rewardkit_request_duration_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("rewardkit_errors", "Failed requests by endpoint and reason "
                              "(unauthorized, body_too_large, too_many_items, invalid, overloaded, timeout, internal)",
                              ["endpoint", "reason"], registry=r)
        self.in_flight = Gauge("rewardkit_requests_in_flight", "HTTP requests being handled", registry=r)
        self.batch_size = Histogram("rewardkit_batch_size", "Items per scored batch (forward pass)",
                                    buckets=_powers_of_two_up_to(max_batch_size), registry=r)
        self.batch_tokens = Histogram("rewardkit_batch_padded_tokens", "Padded tokens (items x longest) per batch",
                                      buckets=_powers_of_two_up_to(max_batch_tokens), registry=r)
        self.batch_duration = Histogram("rewardkit_batch_duration_seconds", "Time to score one batch",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.items_scored = Counter("rewardkit_items_scored", "Items scored", registry=r)
        self.queued_items = Gauge("rewardkit_queued_items", "Items waiting to be batched", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by endpoint and final status, and times it.

    Paths other than the app's routes are counted as "other" so that random URLs cannot grow the label set.
    """

    def __init__(self, app, metrics: ServeMetrics, endpoints: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500  # if the app raises before responding, the server error middleware answers 500
        start = time.perf_counter()

        async def send_and_record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record_status)
        except Exception:
            self.metrics.errors.labels(endpoint, "internal").inc()
            raise
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
