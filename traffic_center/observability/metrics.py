"""Prometheus metrics for the Traffic Center, registered on an injected registry.

Labels stay bounded: route templates, methods, status codes, reasons and result codes; never a
certificate serial, a BRIN or a raw path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PREFIX = "traffic_center"


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_requests = Counter(
            f"{PREFIX}_http_requests",
            "Requests on the mTLS listener, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer a request on the mTLS listener (first byte to last byte).",
            ["route", "method"],
            registry=registry,
        )
        self.refused_callers = Counter(
            f"{PREFIX}_refused_callers",
            "Callers refused before their request was handled, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.exchanges = Counter(
            f"{PREFIX}_exchanges",
            "OSO exchanges handled, by type and result code.",
            ["type", "result"],
            registry=registry,
        )
