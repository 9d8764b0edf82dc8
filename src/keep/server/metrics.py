"""Prometheus metrics of one server process (served at /metrics).

Labels are route templates and status codes only: never account names, ids,
tokens or addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("keep_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "keep_request_seconds",
            "Request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_in = Counter("keep_object_bytes_in", "Object bytes stored", registry=r)
        self.bytes_out = Counter("keep_object_bytes_out", "Object bytes served", registry=r)
        self.objects_stored = Counter("keep_objects_stored", "Objects newly stored", ["kind"], registry=r)
        self.objects_deleted = Counter("keep_objects_deleted", "Objects deleted", ["kind"], registry=r)
        self.login_failures = Counter("keep_login_failures", "Failed logins", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
