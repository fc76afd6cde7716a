"""Prometheus metrics for the Traffic Center, registered on an injected registry.

Labels stay bounded: route templates, methods, status codes, reasons and result codes; never a
certificate serial, a BRIN or a raw path. Two sets: :class:`Metrics`, kept by whoever serves
the vendor API (each worker with ``--workers``), and :class:`NodeGauges`, the ops listener's
own (build info, readiness, what it reads from the store in the background, process metrics).
The list with what each means: docs/operations.md, "Metrics".
"""

from __future__ import annotations

import os
import platform
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from traffic_center import __version__
from traffic_center.domain import errors
from traffic_center.domain.audit import RELAY_FAILURES, TWO_PHASE_TYPES

PREFIX = "traffic_center"

# A 1 GB dossier over a slow school line takes minutes: the buckets reach ten. The HTTP
# histogram uses them too: a relay answers within the relay's own limits (a read timeout
# between chunks, no total), so its request can take minutes, and a histogram whose last
# bucket is 10 s reports every slower request as exactly 10 s.
TRANSFER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# Why the vendor listener refused a TLS handshake: a closed set (metric labels, rule 1).
HANDSHAKE_REFUSAL_REASONS = ("no_certificate", "unknown_ca", "revoked", "expired", "other")
# How the relay found a kept-alive connection to a LAS unfit to use again
# (relay/aiohttp_transport.py): closed by the LAS, seen before use and dropped, or under a
# request; or dropped because the LAS had sent bytes while no request was waiting.
StaleFound = Literal["before_use", "under_request", "out_of_turn"]
# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) as they reach ssl.SSLCertVerificationError.
_VERIFY_CODES = {
    2: "unknown_ca",  # unable to get issuer certificate
    10: "expired",  # certificate has expired
    18: "unknown_ca",  # self-signed certificate
    19: "unknown_ca",  # self-signed certificate in chain
    20: "unknown_ca",  # unable to get local issuer certificate
    21: "unknown_ca",  # unable to verify the first certificate
    23: "revoked",  # certificate revoked (only with a CRL in the server context)
}


def handshake_refusal_reason(error: BaseException) -> str | None:
    """The label for a failed server-side handshake; None when it was no refusal (the client
    hung up, timed out or closed: a load balancer's TCP check, not a caller turned away)."""
    if not isinstance(error, ssl.SSLError) or isinstance(
        error, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(error.verify_code, "other")
    if error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no_certificate"
    return "other"


MetricT = TypeVar("MetricT", bound=MetricWrapperBase)


def labelled(metric: MetricT) -> Callable[..., MetricT]:
    """``metric.labels`` remembered per label values, for the per-request hot path:
    prometheus_client's ``labels()`` checks and joins the values and takes a lock each call
    (~1 % of a session's CPU). The children are the library's own, so what /metrics shows is
    the same; bounded as the labels are (closed sets only). None of ours is ever removed."""
    children: dict[tuple[str, ...], MetricT] = {}

    def child(*values: str) -> MetricT:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


class HandshakeRefusals:
    """Who wants to hear of refused handshakes; kept by the event loop of the vendor listener
    (server/limits.py), which is the only place a failed handshake is visible, and told to by
    the app that runs on that loop."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []

    def add(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Callable[[str], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def report(self, error: BaseException) -> None:
        reason = handshake_refusal_reason(error)
        if reason is not None:
            for listener in self._listeners:
                listener(reason)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The one place: a counter's `_created` twin doubles the series and no dashboard or
        # alert of ours reads it (a process-wide switch of prometheus_client).
        disable_created_metrics()  # type: ignore[no-untyped-call]
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
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        self.refused_callers = Counter(
            f"{PREFIX}_refused_callers",
            "Callers refused before their request was handled, by reason code.",
            ["reason"],
            registry=registry,
        )
        # Every series from the start, so a rate() alert has a start (a closed set: the
        # codes of the error tree's refusals of a caller).
        for reason in caller_refusal_codes():
            self.refused_callers.labels(reason)
        self.exchanges = Counter(
            f"{PREFIX}_exchanges",
            "Exchanges and administrative actions recorded, by type and result code.",
            ["type", "result"],
            registry=registry,
        )
        self.relay_bytes = Counter(
            f"{PREFIX}_relay_bytes",
            "Bytes of dossiers relayed from bron to doel, counted as each chunk passes.",
            registry=registry,
        )
        self.relay_duration = Histogram(
            f"{PREFIX}_relay_duration_seconds",
            "A relayed exchange from request in to its final record, by type, whatever the outcome.",
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
        # Every relayed type's series at 0 from the start: increase() over a series that first
        # appears at 1 misses that first failure (the alert's threshold is five).
        for kind in sorted(TWO_PHASE_TYPES):
            for code in upstream_error_codes():
                self.upstream_errors.labels(type=kind.value, code=code)
        self.upstream_stale_connections = Counter(
            f"{PREFIX}_upstream_stale_connections",
            "Kept-alive connections to a LAS that it had closed: found before use (dropped, a "
            "new one made) or under a request (the request sent once more on a new one); "
            "or that it had sent bytes on while no request was waiting (out of turn: dropped).",
            ["found"],
            registry=registry,
        )
        for found in get_args(StaleFound):  # every series exists from the start
            self.upstream_stale_connections.labels(found)
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
        self.tls_handshakes_refused = Counter(
            f"{PREFIX}_tls_handshakes_refused",
            "TLS handshakes the vendor listener refused, by reason (a closed set).",
            ["reason"],
            registry=registry,
        )
        for reason in HANDSHAKE_REFUSAL_REASONS:  # every series exists from the start
            self.tls_handshakes_refused.labels(reason)
        self.audit_outbox_pending = Gauge(
            f"{PREFIX}_audit_outbox_pending",
            "Audit records this node could not write yet, waiting in its outbox.",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def count_refused_handshake(self, reason: str) -> None:
        self.tls_handshakes_refused.labels(reason).inc()


class NodeGauges:
    """The ops listener's own series: nothing here waits on the store when scraped."""

    def __init__(
        self, registry: CollectorRegistry, *, worker_pids: Callable[[], Sequence[int] | None]
    ) -> None:
        build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which build runs.",
            ["version", "python"],
            registry=registry,
        )
        build_info.labels(__version__, platform.python_version()).set(1)
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when this node is ready (store, audit log writable, CA, not draining), else 0.",
            registry=registry,
        )
        self.store_silence = Gauge(
            f"{PREFIX}_store_seconds_since_success",
            "Seconds since this node last wrote to the store successfully (its heartbeat).",
            registry=registry,
        )
        self.soonest_expiry = Gauge(
            f"{PREFIX}_certificate_soonest_expiry_seconds",
            "Seconds until the soonest expiry among valid issued certificates.",
            registry=registry,
        )
        self.crl_next_update = Gauge(
            f"{PREFIX}_crl_next_update_seconds",
            "Seconds until the served CRL's nextUpdate (negative: expired); NaN before any.",
            registry=registry,
        )
        # NaN, not 0, until a CRL is published: 0 would read as "expires now" and page.
        self.crl_next_update.set(float("nan"))
        self.sessions_open = Gauge(
            f"{PREFIX}_sessions_open",
            "Sessions open and not expired, in the store (all nodes).",
            registry=registry,
        )
        self.audit_open_exchanges = Gauge(
            f"{PREFIX}_audit_open_exchanges",
            "Relayed exchanges with a started record and no final one yet, in the store.",
            registry=registry,
        )
        registry.register(Processes(worker_pids))


class Processes(Collector):
    """``process_*`` of this process; with ``--workers``, of the supervisor and each worker.

    prometheus_client's multiprocess mode collects no process metrics, so the supervisor
    reads its workers' /proc entries itself and labels each series with ``worker`` (the
    supervisor is ``worker="supervisor"``, the workers ``"0"`` … ``"N-1"``: a closed set).
    """

    def __init__(self, worker_pids: Callable[[], Sequence[int] | None]) -> None:
        self._worker_pids = worker_pids

    def collect(self) -> Iterable[Metric]:
        pids = self._worker_pids()
        if pids is None:  # one process: the usual unlabelled series
            return ProcessCollector(registry=None).collect()
        processes = [("supervisor", os.getpid())]
        processes += [(str(index), pid) for index, pid in enumerate(pids)]
        families: dict[str, Metric] = {}
        for worker, pid in processes:
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(
                        sample.name, {**sample.labels, "worker": worker}, sample.value
                    )
        return families.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def upstream_error_codes() -> list[str]:
    """Every code a failed relay is counted under: the error tree's LAS-side failures
    (``UpstreamFailure``'s kin) and how a stream can fail mid-way (``RELAY_FAILURES``)."""
    return sorted(_codes_under(errors.UpstreamFailure) | RELAY_FAILURES)


def caller_refusal_codes() -> list[str]:
    """The code of every refusal of a caller in the error tree (``CallerRefused``'s kin)."""
    return sorted(_codes_under(errors.CallerRefused))


def _codes_under(base: type[errors.TrafficCenterError]) -> set[str]:
    return {kind.code for kind in errors.all_error_classes() if issubclass(kind, base)}
