"""The objects one app instance works with, built in its lifespan and kept on app.state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from traffic_center.audit.trail import AuditTrail
from traffic_center.exchanges.refusals import RefusalLog
from traffic_center.exchanges.service import Exchanges
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.upstream import UpstreamClient
from traffic_center.settings import Settings
from traffic_center.store.store import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    metrics: Metrics
    clock: Callable[[], dt.datetime]
    upstream: UpstreamClient | None
    exchanges: Exchanges
    audit: AuditTrail
    refusals: RefusalLog | None = None

    async def aclose(self) -> None:
        if self.refusals is not None:
            await self.refusals.flush(everything=True)  # the counts of windows still open
        await self.audit.close()
        if self.upstream is not None:
            await self.upstream.aclose()
