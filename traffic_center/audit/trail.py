"""Recording exchanges: fail closed before, never lose a record after.

Before an exchange does anything another party would see, the log must be provably writable
*now*: a relay or notification appends its *started* record (that write is the proof), any
other exchange proves it with ``ensure_writable`` (a real write in the store; an exchange's
admission does it in the transaction that counts its rate-limit hit). If that fails
the exchange is refused with 503 ``AuditNietBeschikbaar`` and nothing is forwarded. Once the
outcome is known the *final* record is appended. If the store fails in between (the dossier
was already streamed), the record waits in this node's outbox and is appended, in order,
before anything else once the store answers again (the node's heartbeat retries it); until
then the node reports the log as failing, and so itself as not ready.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.lowlevel
import structlog

from traffic_center.audit.entry import AuditEntry
from traffic_center.domain.audit import STARTED, AuditRecord, AuditType, Phase
from traffic_center.domain.errors import (
    AuditKeyMismatch,
    AuditUnavailable,
    StoreUnavailable,
    TrafficCenterError,
)
from traffic_center.observability.context import (
    current_request_id,
    incoming_traceparent,
    note_answer_logged,
)
from traffic_center.observability.metrics import Metrics, labelled
from traffic_center.relay.trace import traceparent_for_log
from traffic_center.store.rate_limits import Hit, WindowHits
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.audit")

T = TypeVar("T")

# Records that could not be written yet; beyond this the node refuses everything anyway.
MAX_PENDING = 10_000
# At most this many records in one append transaction (the group commit): bounds how long
# the chain head's lock is held and what one failed batch sends back to be retried.
MAX_BATCH = 64


@dataclass(eq=False, slots=True)
class _Waiter:
    """A record waiting for the append transaction that writes it, and what became of it.

    Set before ``woken`` is: ``batch`` (this caller writes it, its own record first) or
    ``error`` (its batch met an unavailable store; the record waits in the outbox)."""

    record: AuditRecord
    woken: anyio.Event = field(default_factory=anyio.Event)
    batch: list[_Waiter] | None = None
    error: StoreUnavailable | None = None


class AuditTrail:
    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        metrics: Metrics,
        clock: Callable[[], dt.datetime],
        status_for: Callable[[type[TrafficCenterError]], int],
        node_id: str | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self._metrics = metrics
        # By (type, result): both closed sets (the audit types, the OSO and error codes).
        self._exchanges = labelled(metrics.exchanges)
        self._clock = clock
        self._status_for = status_for
        self.node_id = node_id
        self._pending: collections.deque[AuditRecord] = collections.deque()
        self._lock = anyio.Lock()
        # The group commit: records that arrived while an append transaction was in flight,
        # in arrival order, and whether one is (``_append_together``).
        self._queued: collections.deque[_Waiter] = collections.deque()
        self._in_flight = 0
        # A store whose transactions never leave the event loop (SQLite) runs appends one
        # after another however many are "in flight", so records would never meet in a
        # batch: there one append at a time, whose writer first lets the requests already
        # under way on the loop queue their records behind it (``_append_together``).
        self._gathers = not store.database.transactions_yield
        # One append of this process in flight, on every store: SQLite's never overlap, and
        # PostgreSQL's optimistic appends (one statement, the head's lock held only while it
        # runs) would chain on the same head and miss each other (store/audit.py).
        self.max_in_flight = 1
        # The last write's verdict: readiness reads it, so a probe never waits on the store.
        self._failing = False
        # When a write last succeeded (monotonic): readiness notices a store that stopped
        # answering without waiting for a write to give up (SQLite waits out its busy timeout).
        # Start-up has just read the store (the chain's key), which counts as an answer.
        self._succeeded_at = time.monotonic()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def last_success(self) -> float:
        """``time.monotonic()`` of the last write the store took (a record or a heartbeat)."""
        return self._succeeded_at

    @property
    def writable(self) -> bool:
        """False from a failed write until a write succeeds again (readiness)."""
        return not self._failing

    def note_write(self, *, ok: bool) -> None:
        """Told by other writes of this node (the heartbeat) whether the store took them."""
        if ok:
            self._succeeded_at = time.monotonic()
        if ok and not self._pending:
            self._failing = False
        elif not ok:
            self._failing = True

    def begin(self, type: AuditType, *, caller_serial: str | None) -> AuditEntry:
        return AuditEntry(
            type,
            caller_serial,
            request_in=self._clock(),
            request_id=current_request_id(),
            node_id=self.node_id,
        )

    async def ensure_writable(self) -> None:
        """Fail closed: raise AuditUnavailable unless a record could be written right now."""
        await self._prove_writable(
            lambda: self._store.audit.probe_write(self._clock(), secret=self._secret)
        )

    async def count_and_ensure_writable(self, hit: Hit) -> WindowHits:
        """``ensure_writable``, with an exchange's rate-limit hit counted in the same write
        transaction: admission is one store transaction, not two (issue 14). The hits, for
        the limiter to judge; AuditUnavailable when the log (or so the store) is not
        writable."""
        return await self._prove_writable(
            lambda: self._store.count_and_probe(hit, secret=self._secret)
        )

    async def _prove_writable(self, probe: Callable[[], Awaitable[T]]) -> T:
        try:
            await self._flush()
            if self._pending:
                raise StoreUnavailable("earlier audit records are still waiting")
            proof = await _once_more_if_unavailable(probe)
            self._succeeded_at = time.monotonic()
        except StoreUnavailable as exc:
            self._write_failed()
            if isinstance(exc, AuditUnavailable):
                raise
            raise AuditUnavailable(exc.detail) from exc
        return proof

    async def started(self, entry: AuditEntry) -> None:
        """The first phase of a relayed exchange, written before a byte is forwarded.

        This write is the fail-closed proof: if it fails, nothing is forwarded (503).
        """
        record = self._started_record(entry)
        with anyio.CancelScope(shield=True):
            # The record itself is the proof: written now, after any still waiting, or 503.
            await self._prove_writable(
                lambda: self._store.audit.append(record, secret=self._secret)
            )

    async def count_and_start(
        self, entry: AuditEntry, hit: Hit, *, admits: Callable[[WindowHits], bool]
    ) -> WindowHits | None:
        """``started``, with the exchange's rate-limit hit counted in the same write
        transaction (issue 14); the record is written only if ``admits`` the hits. The hits,
        for the limiter to judge (None: an earlier try that committed admitted it)."""
        record = self._started_record(entry)
        with anyio.CancelScope(shield=True):
            hits = await self._prove_writable(
                lambda: self._store.count_and_start(hit, record, secret=self._secret, admits=admits)
            )
        # After the scope: its __exit__ may swallow an exception, as far as mypy knows.
        return hits  # noqa: RET504

    def _started_record(self, entry: AuditEntry) -> AuditRecord:
        entry.forwarded_at = self._clock()
        return entry.outcome(
            STARTED,
            http_status=None,
            response_out=None,
            recorded_at=entry.forwarded_at,
            phase=Phase.STARTED,
        )

    async def finished(
        self, entry: AuditEntry, result: str, *, http_status: int | None
    ) -> AuditRecord:
        """Record the outcome, now; returns the record (its timestamps give the duration)."""
        record = entry.outcome(result, http_status=http_status, response_out=self._clock())
        await self.record(record, caller_fingerprint=entry.caller_fingerprint)
        return record

    async def failed(self, entry: AuditEntry, error: TrafficCenterError) -> AuditRecord:
        return await self.finished(entry, error.code, http_status=self._status_for(type(error)))

    async def record(self, record: AuditRecord, *, caller_fingerprint: str | None = None) -> None:
        """Append, or keep for later; never raises: by now the caller has its answer.

        ``caller_fingerprint`` goes to the log line only (the record names the serial).
        """
        if record.phase is Phase.FINAL:
            self._exchanges(record.type.value, record.result).inc()
        # Shielded: a doel that hung up cancels its request, but the record must still land.
        with anyio.CancelScope(shield=True):
            why_not = None
            try:
                await self._append_in_order(record)
            except StoreUnavailable as exc:
                self._write_failed()
                why_not = exc.code
                log.error("audit_write_failed", pending=len(self._pending), code=exc.code)
        _log_line(record, unrecorded_because=why_not, caller_fingerprint=caller_fingerprint)

    async def close_orphan(self, record: AuditRecord) -> bool:
        """An orphan's final record (audit/nodes.py), unless another node wrote it first:
        every node sweeps the same orphans and the first append wins. Counted and logged by
        that node alone, so the exchanges metric summed over nodes and the log say one close
        once. Not while this node's own records wait in its outbox (they go first): False
        then too. StoreUnavailable as the heartbeat's round expects it."""
        if self._pending:
            return False
        with anyio.CancelScope(shield=True):
            try:
                written = await self._store.audit.append(record, secret=self._secret)
            except StoreUnavailable:
                self._write_failed()
                raise
        self.note_write(ok=True)
        if written:
            self._exchanges(record.type.value, record.result).inc()
            _log_line(record, unrecorded_because=None, caller_fingerprint=None)
        return written

    async def flush_pending(self) -> None:
        """Retry the outbox (the heartbeat calls this); clears the failing state on success."""
        try:
            await self._flush()
        except StoreUnavailable:
            self._write_failed()
            return
        self.note_write(ok=True)

    async def _append_in_order(self, record: AuditRecord) -> None:
        """Straight to the store when nothing waits in the outbox, behind the waiting records
        otherwise. The direct append takes no lock of this trail: order matters only for
        records that wait (they were written before), and concurrent appends are ordered by
        the store itself, which chains each under the head's lock (``store/audit.py``)."""
        if self._pending:
            self._keep(record)
            await self._flush()
            return
        await self._append_together(record)
        if not self._pending:
            self._failing = False

    async def _append_together(self, record: AuditRecord) -> None:
        """Group commit (issue 14): while ``max_in_flight`` append transactions of this
        process are in flight, a record queues; the next one to finish hands everything
        queued (up to MAX_BATCH) to the first caller queued, which appends it in one
        transaction. Under load the chain head's lock is taken once for many records, not
        once each; when little is going on a record goes straight to the store, as before.

        On SQLite the writer gathers first (``_gathered``): there the queue would otherwise
        stay empty. Concurrent records of different requests have no order of their own; one
        caller's records keep theirs (it waits for each).

        Leader and followers, no task of its own: every record is written by a request of
        its own (shielded, in ``record``), and a queued record is never left without a
        writer. StoreUnavailable: the record waits in the outbox."""
        waiter = _Waiter(record)
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            batch = [waiter]
            if self._gathers:
                batch = await self._gathered(waiter)
        else:
            self._queued.append(waiter)
            await waiter.woken.wait()
            if waiter.batch is None:  # written (or kept) by another caller's transaction
                if waiter.error is not None:
                    raise waiter.error
                return
            batch = waiter.batch
        await self._lead(batch)
        if waiter.error is not None:
            raise waiter.error

    async def _lead(self, batch: list[_Waiter]) -> None:
        """Write ``batch``; then wake its callers and hand the next one over."""
        unwritten = collections.deque(waiter.record for waiter in batch)
        told_from = len(batch)  # the callers from here on are told ``error``
        error: StoreUnavailable | None = None
        try:
            if self._pending:
                # A batch before this one met an outage: these go behind its records, and
                # succeed or fail with the outbox (as a record arriving then always did).
                told_from = 0
                while unwritten:
                    self._keep(unwritten.popleft())
                await self._flush()
            else:
                await self._drain(unwritten)
        except StoreUnavailable as exc:
            error = exc
        finally:
            # What did not land waits in the outbox, in order; after an unexpected exception
            # too, its callers told the store failed (no record is lost to a bug here).
            if unwritten and error is None:
                error = StoreUnavailable("the audit append was interrupted")
            for record in unwritten:
                self._keep(record)
            told_from = min(told_from, len(batch) - len(unwritten))
            for waiter in batch[told_from:]:
                waiter.error = error
            for waiter in batch:
                waiter.woken.set()
            self._hand_over()

    async def _gathered(self, waiter: _Waiter) -> list[_Waiter]:
        """``waiter``'s batch, with the records queued while the loop came by once: the
        requests that were ready to run with this one (on SQLite a session's two records
        cost two transactions' locks, WAL writes and Python, issue 14). One pass of the
        loop, no timer: when little is going on a record is written as soon as before."""
        await anyio.lowlevel.checkpoint()
        self._queued.appendleft(waiter)
        return self._next_from_queue()

    def _hand_over(self) -> None:
        """The queued records, up to a batch, to the first of their callers to write."""
        if not self._queued:
            self._in_flight -= 1
            return
        batch = self._next_from_queue()
        batch[0].batch = batch
        batch[0].woken.set()

    def _next_from_queue(self) -> list[_Waiter]:
        batch = _next_batch(self._queued)
        for _ in batch:
            self._queued.popleft()
        return batch

    def _keep(self, record: AuditRecord) -> None:
        if len(self._pending) < MAX_PENDING:
            self._pending.append(record)
            self._metrics.audit_outbox_pending.set(len(self._pending))
        else:
            log.error("audit_outbox_full", dropped_transaction=record.transaction_id)

    async def _append(self, record: AuditRecord) -> None:
        await _once_more_if_unavailable(
            lambda: self._store.audit.append(record, secret=self._secret)
        )
        self._succeeded_at = time.monotonic()

    async def _append_all(self, records: Sequence[AuditRecord]) -> None:
        await _once_more_if_unavailable(
            lambda: self._store.audit.append_all(records, secret=self._secret)
        )
        self._succeeded_at = time.monotonic()

    def _write_failed(self) -> None:
        self._failing = True
        self._metrics.audit_write_failures.inc()

    async def _flush(self) -> None:
        """Append waiting records in order; StoreUnavailable leaves the rest waiting."""
        if not self._pending:
            # Nothing to drain, so no lock to queue on (it piled up under concurrency).
            self._failing = False
            return
        async with self._lock:
            try:
                await self._drain(self._pending)
            finally:
                self._metrics.audit_outbox_pending.set(len(self._pending))
            self._failing = False

    async def _drain(self, records: collections.deque[AuditRecord]) -> None:
        """Append ``records`` in order, up to MAX_BATCH in one transaction, each taken off
        the left once it landed (or was set aside); StoreUnavailable leaves the rest."""
        while records:
            batch = _next_batch(records)
            if len(batch) == 1:
                await self._append_or_set_aside(batch[0])
                records.popleft()
                continue
            try:
                await self._append_all(batch)
            except StoreUnavailable:
                raise
            except Exception:  # the store refused one of them: find out which, one by one
                for record in batch:
                    await self._append_or_set_aside(record)
                    records.popleft()
                continue
            for _ in batch:
                records.popleft()

    async def _append_or_set_aside(self, record: AuditRecord) -> None:
        """Append; a record the store refuses for what it holds (not for being away) would
        block the chain for ever if retried: it is logged loudly and set aside instead."""
        try:
            await self._append(record)
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

    async def close(self) -> None:
        """At shutdown: one last try; what still cannot be written is named in the log."""
        with contextlib.suppress(StoreUnavailable):
            await self._flush()
        for record in self._pending:
            log.error("audit_record_lost_at_shutdown", transaction_id=record.transaction_id)


_Item = TypeVar("_Item", AuditRecord, _Waiter)


def _next_batch(queue: collections.deque[_Item]) -> list[_Item]:
    """The first up to MAX_BATCH items of ``queue`` (left in it), ending at a key rotation:
    a KEY_ROTATED record hands the chain to another key, so what follows it is not this
    batch's to sign."""
    batch: list[_Item] = []
    for item in itertools.islice(queue, MAX_BATCH):
        batch.append(item)
        if _record_of(item).type is AuditType.KEY_ROTATED:
            break
    return batch


def _record_of(item: AuditRecord | _Waiter) -> AuditRecord:
    return item.record if isinstance(item, _Waiter) else item


async def _once_more_if_unavailable(write: Callable[[], Awaitable[T]]) -> T:
    """A failed write is tried once more, on a fresh connection: the store drops a connection
    that failed, and one broken by an outage that has just ended (SQLite's "disk I/O error"
    after its file was unwritable) should not cost an exchange. An append is idempotent; a
    failed admission (``count_and_ensure_writable``) was rolled back, hit and all."""
    try:
        return await write()
    except AuditKeyMismatch:
        raise
    except StoreUnavailable:
        return await write()


def _log_line(
    record: AuditRecord, *, unrecorded_because: str | None, caller_fingerprint: str | None
) -> None:
    """The one canonical log line per exchange, when its outcome is known. Metadata only.

    Its level pages by outcome: an answer of 500 or more, or a record the store did not take,
    is an error; a refused certificate a warning; everything else info. The answer carries
    the record's transaction id (``note_answer_logged``).
    """
    note_answer_logged(transaction_id=record.transaction_id)
    status = record.http_status
    if unrecorded_because is not None or (status is not None and status >= 500):
        emit = log.error
    elif record.type is AuditType.REFUSED_CALLER:
        emit = log.warning
    else:
        emit = log.info
    emit(
        "exchange",
        type=record.type.value,
        result=record.result,
        status=status,
        transaction_id=record.transaction_id,
        request_id=record.request_id,
        sessie_id=record.sessie_id,
        doel=record.doel_routeringskenmerk,
        bron=record.bron_routeringskenmerk,
        caller_serial=record.caller_serial,
        caller_fingerprint=caller_fingerprint,
        traceparent=traceparent_for_log(incoming_traceparent()),
        upstream_status=record.upstream_status,
        bytes=record.size_bytes,
        sha256=record.sha256,
        duration_ms=_duration_ms(record),
        recorded=unrecorded_because is None,
        unrecorded_because=unrecorded_because,
    )


def _duration_ms(record: AuditRecord) -> float | None:
    if record.request_in is None or record.response_out is None:
        return None
    return round((record.response_out - record.request_in).total_seconds() * 1000, 1)
