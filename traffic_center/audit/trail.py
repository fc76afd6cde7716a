"""Recording exchanges: fail closed before, never lose a record after.

Before an exchange does anything another party would see, ``ensure_writable`` proves the log
can be written *now* (a real write in the store); if not, the exchange is refused with 503
``AuditNietBeschikbaar`` and nothing is forwarded. Once the outcome is known the record is
appended to the chain. If the store fails in between (the dossier was already streamed), the
record waits in this node's outbox and is appended, in order, before anything else once the
store answers again; until then the node reports itself not ready.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
from collections.abc import Callable

import anyio
import structlog

from traffic_center.audit.entry import AuditEntry
from traffic_center.domain.audit import AuditRecord, AuditType
from traffic_center.domain.errors import AuditUnavailable, StoreUnavailable, TrafficCenterError
from traffic_center.observability.context import current_request_id
from traffic_center.observability.metrics import Metrics
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.audit")

# Records that could not be written yet; beyond this the node refuses everything anyway.
MAX_PENDING = 10_000


class AuditTrail:
    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        metrics: Metrics,
        clock: Callable[[], dt.datetime],
        status_for: Callable[[type[TrafficCenterError]], int],
    ) -> None:
        self._store = store
        self._secret = secret
        self._metrics = metrics
        self._clock = clock
        self._status_for = status_for
        self._pending: collections.deque[AuditRecord] = collections.deque()
        self._lock = anyio.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def begin(self, type: AuditType, *, caller_serial: str | None) -> AuditEntry:
        return AuditEntry(
            type, caller_serial, request_in=self._clock(), request_id=current_request_id()
        )

    async def ensure_writable(self) -> None:
        """Fail closed: raise AuditUnavailable unless a record could be written right now."""
        try:
            await self._flush()
            if self._pending:
                raise StoreUnavailable("earlier audit records are still waiting")
            await self._store.audit.probe_write(self._clock())
        except StoreUnavailable as exc:
            self._metrics.audit_write_failures.inc()
            raise AuditUnavailable(exc.detail) from exc

    async def finished(
        self, entry: AuditEntry, result: str, *, http_status: int | None
    ) -> AuditRecord:
        """Record the outcome, now; returns the record (its timestamps give the duration)."""
        record = entry.outcome(result, http_status=http_status, response_out=self._clock())
        await self.record(record)
        return record

    async def failed(self, entry: AuditEntry, error: TrafficCenterError) -> None:
        await self.finished(entry, error.code, http_status=self._status_for(type(error)))

    async def record(self, record: AuditRecord) -> None:
        """Append, or keep for later; never raises: by now the caller has its answer."""
        self._metrics.exchanges.labels(type=record.type.value, result=record.result).inc()
        _log_line(record)
        # Shielded: a doel that hung up cancels its request, but the record must still land.
        with anyio.CancelScope(shield=True):
            if len(self._pending) < MAX_PENDING:
                self._pending.append(record)
            else:
                log.error("audit_outbox_full", dropped_transaction=record.transaction_id)
            try:
                await self._flush()
            except StoreUnavailable:
                self._metrics.audit_write_failures.inc()
                log.error("audit_write_failed", pending=len(self._pending))

    async def _flush(self) -> None:
        """Append waiting records in order; StoreUnavailable leaves the rest waiting.

        A record the store refuses for what it holds (not for being away) would block the
        chain for ever if retried: it is logged loudly and set aside instead.
        """
        async with self._lock:
            while self._pending:
                record = self._pending[0]
                try:
                    await self._store.audit.append(record, secret=self._secret)
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    self._metrics.audit_write_failures.inc()
                    log.error(
                        "audit_record_refused_by_store",
                        transaction_id=record.transaction_id,
                        type=record.type.value,
                        error=type(exc).__name__,
                    )
                self._pending.popleft()

    async def close(self) -> None:
        """At shutdown: one last try; what still cannot be written is named in the log."""
        with contextlib.suppress(StoreUnavailable):
            await self._flush()
        for record in self._pending:
            log.error("audit_record_lost_at_shutdown", transaction_id=record.transaction_id)


def _log_line(record: AuditRecord) -> None:
    """The one canonical log line per exchange, when its outcome is known. Metadata only."""
    log.info(
        "exchange",
        type=record.type.value,
        result=record.result,
        status=record.http_status,
        transaction_id=record.transaction_id,
        request_id=record.request_id,
        sessie_id=record.sessie_id,
        doel=record.doel_routeringskenmerk,
        bron=record.bron_routeringskenmerk,
        upstream_status=record.upstream_status,
        bytes=record.size_bytes,
        sha256=record.sha256,
        duration_ms=_duration_ms(record),
    )


def _duration_ms(record: AuditRecord) -> float | None:
    if record.request_in is None or record.response_out is None:
        return None
    return round((record.response_out - record.request_in).total_seconds() * 1000, 1)
