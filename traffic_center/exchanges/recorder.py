"""Recording an exchange once its outcome is known: the store row, the metric, the log line."""

from __future__ import annotations

import logging

import anyio

from traffic_center.domain.errors import StoreUnavailable
from traffic_center.domain.exchanges import ExchangeRecord
from traffic_center.observability.metrics import Metrics
from traffic_center.store.store import Store

log = logging.getLogger("traffic_center.exchanges")


class ExchangeRecorder:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    async def record(self, record: ExchangeRecord) -> None:
        """Never raises: by now the doel has its answer, and the answer must not change."""
        self._metrics.exchanges.labels(type=record.type.value, result=record.result).inc()
        # Shielded: a doel that hung up cancels the request, but its record must still land.
        with anyio.CancelScope(shield=True):
            try:
                await self._store.exchanges.append(record)
            except StoreUnavailable:
                log.exception("exchange %s not recorded", record.transaction_id)
        log.info(
            "exchange type=%s transaction=%s sessie=%s result=%s upstream=%s bytes=%s sha256=%s",
            record.type.value,
            record.transaction_id,
            record.sessie_id,
            record.result,
            record.upstream_status,
            record.size_bytes,
            record.sha256,
        )
