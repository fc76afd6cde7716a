"""What the two relayed exchanges share: their collaborators, and what they tell operators."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from traffic_center.audit.entry import AuditEntry
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.service import Broker
from traffic_center.domain.audit import AuditType
from traffic_center.domain.errors import RelayNotConfigured, TrafficCenterError, UpstreamFailure
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.upstream import UpstreamClient
from traffic_center.store.store import Store


@dataclass(frozen=True, slots=True)
class RelayCollaborators:
    """Built once per app; every relayed exchange works with the same ones."""

    store: Store
    broker: Broker
    upstream: UpstreamClient | None  # None: this node has no relay certificate
    audit: AuditTrail
    metrics: Metrics
    clock: Callable[[], dt.datetime]


class RelayExchange:
    """A message the Traffic Center carries to a LAS endpoint and records."""

    kind: ClassVar[AuditType]

    def __init__(self, collaborators: RelayCollaborators) -> None:
        self._store = collaborators.store
        self._broker = collaborators.broker
        self._upstream = collaborators.upstream
        self._audit = collaborators.audit
        self._metrics = collaborators.metrics
        self._clock = collaborators.clock

    def _configured_upstream(self) -> UpstreamClient:
        if self._upstream is None:
            raise RelayNotConfigured()
        return self._upstream

    def _upstream_answered(self, exchange: AuditEntry, status: int) -> None:
        """The LAS's answer headers are in: note when and what, and how long it took."""
        exchange.response_in = self._clock()
        exchange.upstream_status = status
        assert exchange.forwarded_at is not None
        self._metrics.upstream_duration.labels(type=self.kind.value).observe(
            (exchange.response_in - exchange.forwarded_at).total_seconds()
        )

    def _count_if_upstream_failure(self, error: TrafficCenterError) -> None:
        if isinstance(error, UpstreamFailure):
            self._metrics.upstream_errors.labels(type=self.kind.value, code=error.code).inc()
