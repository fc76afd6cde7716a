"""What the two relayed exchanges share: their collaborators, and what they tell operators."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from traffic_center.audit.entry import AuditEntry
from traffic_center.domain.errors import RelayNotConfigured
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class RelayCollaborators:
    """Built once per app; every relayed exchange works with the same ones."""

    upstream: UpstreamClient | None  # None: this node has no relay certificate
    metrics: Metrics
    clock: Callable[[], dt.datetime]


class RelayExchange:
    """A message the Traffic Center carries to a LAS endpoint, once the broker allowed it."""

    def __init__(self, collaborators: RelayCollaborators) -> None:
        self._upstream = collaborators.upstream
        self._metrics = collaborators.metrics
        self._clock = collaborators.clock

    def _configured_upstream(self) -> UpstreamClient:
        if self._upstream is None:
            raise RelayNotConfigured()
        return self._upstream

    def _upstream_answered(self, entry: AuditEntry, status: int) -> None:
        """The LAS's answer headers are in: note when and what, and how long it took."""
        entry.response_in = self._clock()
        entry.upstream_status = status
        assert entry.forwarded_at is not None
        self._metrics.upstream_duration.labels(type=entry.type.value).observe(
            (entry.response_in - entry.forwarded_at).total_seconds()
        )
