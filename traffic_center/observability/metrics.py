"""Prometheus metrics for the Traffic Center, registered on an injected registry.

Labels stay bounded: route templates, methods, status codes, reasons and result codes; never a
certificate serial, a BRIN or a raw path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "traffic_center"

# A 1 GB dossier over a slow school line takes minutes: the buckets reach ten.
TRANSFER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


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
            "Exchanges and administrative actions recorded, by type and result code.",
            ["type", "result"],
            registry=registry,
        )
        self.relay_bytes = Counter(
            f"{PREFIX}_relay_bytes",
            "Bytes of dossiers relayed from bron to doel.",
            registry=registry,
        )
        self.relay_duration = Histogram(
            f"{PREFIX}_relay_duration_seconds",
            "A relayed exchange from request in to last byte out, by type.",
            ["type"],
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            f"{PREFIX}_upstream_duration_seconds",
            "From forwarding to a LAS until its answer's headers arrived, by type.",
            ["type"],
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            f"{PREFIX}_upstream_errors",
            "Relays that failed on the LAS side (unreachable, timeout, bad answer, broke off).",
            ["type", "code"],
            registry=registry,
        )
        self.relays_in_flight = Gauge(
            f"{PREFIX}_relays_in_flight",
            "Relays between a LAS and a doel right now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.audit_write_failures = Counter(
            f"{PREFIX}_audit_write_failures",
            "Failed attempts to write the audit log (each refused an exchange or delayed a record).",
            registry=registry,
        )
        self.store_latency = Histogram(
            f"{PREFIX}_store_latency_seconds",
            "Duration of a store transaction, by kind (read or write).",
            ["kind"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        # Fair relay slots (docs/security.md): who holds slots, as counts, never a BRIN.
        self.relay_largest_share = Gauge(
            f"{PREFIX}_relay_largest_share",
            "Relay slots held by the one doel school (or bron endpoint) that holds the most.",
            ["share"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.relay_refusals = Counter(
            f"{PREFIX}_relay_refusals",
            "Relays refused at once because slots were full, by share: node, doel_school, "
            "bron_endpoint.",
            ["share"],
            registry=registry,
        )
        self.request_bodies_too_large = Counter(
            f"{PREFIX}_request_bodies_too_large",
            "Requests answered 413 because their body exceeded TC_MAX_REQUEST_BODY_BYTES.",
            registry=registry,
        )
