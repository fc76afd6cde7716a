"""The one way every exchange runs: authenticate → authorise → open the record → act → close.

Every OSO message, the endpoint overview, the audit read and every refused caller go through
:meth:`ExchangeRunner.run`. The record is closed on **every** exit:

=========================  ===============================================================
exit                       final record (and the answer)
=========================  ===============================================================
success                    the result the body gave with ``succeed`` (or the stream's)
a TrafficCenterError       its code and status (refusals, bron answers, relay failures)
any other exception        ``InterneFout`` 500; logged with the request id, re-raised as
                           :class:`InternalError` so the client gets problem+json
cancelled (client gone)    ``AfgebrokenDoorDoel``, no status
the caller refused         an ``aanroepGeweigerd`` record with the certificate's serial,
                           one per certificate and window with a count (``refusals``)
over its rate limit        429, recorded like a refused caller (rule 9)
=========================  ===============================================================

"Open the record" is fail-closed: a relayed exchange writes its *started* record before a
byte is forwarded (``Exchange.open``, which counts a dossier's or notification's rate-limit
hit in the same store transaction); any other exchange proves the log writable first. A
streamed dossier hands the closing over to the stream (``Exchange.hand_off``), which closes
the record after the last byte. When the store is down the final record waits in the
outbox, and its log line says it is not recorded yet and why.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import structlog

from traffic_center.audit.entry import AuditEntry
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.authenticator import Authenticator
from traffic_center.broker.caller import (
    Caller,
    CertificateIdentity,
    Peer,
    SessionAsked,
    SessionFound,
)
from traffic_center.broker.rate_limits import Admission, RateLimiter
from traffic_center.domain.audit import DOEL_DISCONNECTED, INTERNAL_ERROR, AuditRecord, AuditType
from traffic_center.domain.errors import (
    CallerRefused,
    InternalError,
    InvalidInput,
    RateLimited,
    TrafficCenterError,
    UpstreamFailure,
)
from traffic_center.domain.identifiers import parse_sessie_id
from traffic_center.domain.models import Endpoint
from traffic_center.exchanges.refusals import RefusalLog
from traffic_center.observability.logging import raised_at
from traffic_center.observability.metrics import Metrics
from traffic_center.pki.inspect import fingerprint_sha256, serial_hex

log = structlog.get_logger("traffic_center.exchanges")

Role = Literal["doel", "bron"]

# Rule 9: the budget (broker/rate_limits.ROUTES) each exchange counts against.
_ROUTE_OF = {
    AuditType.SESSION: "sessions",
    AuditType.CHECK: "checks",
    AuditType.DOSSIER: "dossiers",
    AuditType.CLOSE: "closes",
    AuditType.NOTIFICATION: "notifications",
    # The SWV flow's messages share the notifications budget: the same kind of traffic.
    AuditType.SWV_NOTIFICATION: "notifications",
    AuditType.FEEDBACK: "notifications",
    AuditType.ENDPOINT_OVERVIEW: "endpoints",
    AuditType.AUDIT_READ: "audit_reads",
}

# Relays whose authorisation only reads: their rate-limit hit is counted in the write
# transaction of their started record, one store transaction fewer per relay (issue 14). The
# SWV flow's authorisations write (a koppelsleutel's triple, a feedback claim), so a caller
# over its budget must be turned away before them: they are admitted first, as the rest.
_COUNTED_WITH_STARTED = frozenset({AuditType.DOSSIER, AuditType.NOTIFICATION})


class Exchange:
    """One exchange while it runs: who asked, what the record will say, and how it ends."""

    def __init__(
        self,
        caller: Caller,
        entry: AuditEntry,
        trail: AuditTrail,
        metrics: Metrics,
        *,
        relayed: bool = False,
        uncounted: Admission | None = None,
    ):
        self.caller = caller
        self.entry = entry
        self._trail = trail
        self._metrics = metrics
        self._relayed = relayed
        # The rate-limit hit ``open`` counts with the started record; the runner counts it
        # if the exchange ends before that (``ExchangeRunner._end_with_error``).
        self.uncounted = uncounted
        # The session the exchange named, read with the caller (``ExchangeRunner.run``'s
        # ``asks``); None when it was not asked for.
        self.session_found: SessionFound | None = None
        # ``open`` found the caller over its budget: a refusal, without a record of its own.
        self.limited = False
        self.outcome: tuple[str, int] | None = None
        self.handed_off = False
        self._closed = False

    def succeed(self, result: str, *, http_status: int) -> None:
        """What the record says when the body returns normally."""
        self.outcome = (result, http_status)

    async def open(self) -> None:
        """The started record of a relayed exchange: written now, or the exchange is refused
        (503; 429 when the hit counted with it is over the caller's budget)."""
        admission, self.uncounted = self.uncounted, None
        if admission is None:
            await self._trail.started(self.entry)
            return
        hits = await self._trail.count_and_start(self.entry, admission.hit, admits=admission.allows)
        try:
            if hits is not None:
                admission.judge(hits)
        except RateLimited:
            # Nothing was started, so nothing is closed: the refusal is the record (rule 9).
            self.limited = self._closed = True
            raise

    def hand_off(self) -> Exchange:
        """The body returns before the exchange ends (a stream): the stream closes it."""
        self.handed_off = True
        return self

    async def close(self, result: str, *, http_status: int | None) -> AuditRecord | None:
        """The final record; once, however many exits race to it."""
        if self._closed:
            return None
        self._closed = True
        record = await self._trail.finished(self.entry, result, http_status=http_status)
        self._observe_duration(record)
        return record

    async def close_with_error(self, error: TrafficCenterError) -> None:
        if self._closed:
            return
        self._closed = True
        if isinstance(error, UpstreamFailure):
            self._metrics.upstream_errors.labels(type=self.entry.type.value, code=error.code).inc()
        self._observe_duration(await self._trail.failed(self.entry, error))

    def _observe_duration(self, record: AuditRecord) -> None:
        """A relay's duration, whatever its outcome: refused, failed, broken off or delivered."""
        if self._relayed and record.request_in is not None:
            self._metrics.relay_duration.labels(type=record.type.value).observe(
                (record.recorded_at - record.request_in).total_seconds()
            )


class ExchangeRunner:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        audit: AuditTrail,
        metrics: Metrics,
        limiter: RateLimiter,
        refusals: RefusalLog,
    ):
        self._authenticator = authenticator
        self._audit = audit
        self._metrics = metrics
        self._limiter = limiter
        self._refusals = refusals

    @asynccontextmanager
    async def run(
        self,
        kind: AuditType,
        peer: Peer,
        *,
        role: Role,
        sessie_id: str | None = None,
        two_phase: bool = False,
        asks: SessionAsked | None = None,
    ) -> AsyncIterator[Exchange]:
        """Authenticate the peer, open the record, run the body, close the record.

        ``two_phase``: the body calls ``open()`` once authorised, just before forwarding;
        otherwise the log is proven writable before the body runs. ``asks``: a session the
        body will judge, read with the caller's registration (``Exchange.session_found``).
        """
        entry = self._audit.begin(kind, caller_serial=None)
        # The session asked about, even when refused; only a well-formed id is kept.
        with contextlib.suppress(InvalidInput):
            entry.sessie_id = parse_sessie_id(sessie_id) if sessie_id is not None else None
        caller, found = await self._authenticate(peer, entry, asks)
        _file_under(entry, caller, role)
        admission = self._limiter.admission(_ROUTE_OF[kind], caller.routeringskenmerk)
        counted_with_started = two_phase and kind in _COUNTED_WITH_STARTED
        if not counted_with_started:
            await self._admit(
                admission, caller.identity.serial, entry, prove_writable=not two_phase
            )
        exchange = Exchange(
            caller,
            entry,
            self._audit,
            self._metrics,
            relayed=two_phase,
            uncounted=admission if counted_with_started else None,
        )
        exchange.session_found = found
        try:
            yield exchange
        except TrafficCenterError as error:
            await self._end_with_error(exchange, error)
            raise
        except Exception as unexpected:
            _log_internal_error(entry, unexpected)
            await exchange.close(INTERNAL_ERROR, http_status=500)
            raise InternalError() from None
        except BaseException:  # cancelled: the client hung up before its answer
            await exchange.close(DOEL_DISCONNECTED, http_status=None)
            raise
        if not exchange.handed_off:
            assert exchange.outcome is not None, "an exchange ends with succeed() or an error"
            result, status = exchange.outcome
            await exchange.close(result, http_status=status)

    async def identify(self, peer: Peer) -> CertificateIdentity:
        """Who the certificate says the caller is; a refusal is recorded like any. Also the
        request guard's early screen, so it spends no route's budget."""
        try:
            return await self._authenticator.identify(peer)
        except CallerRefused as refused:
            await self._refused(refused, peer)
            raise

    async def whoami(self, peer: Peer) -> tuple[CertificateIdentity, Endpoint | None]:
        """identify, and the endpoint the certificate is registered to, as the whoami route:
        within its own budget (rule 9); a refusal is recorded like any."""
        try:
            identity, endpoint = await self._authenticator.identity_as_registered(peer)
        except CallerRefused as refused:
            await self._refused(refused, peer)
            raise
        admission = self._limiter.admission("whoami", identity.routeringskenmerk)
        await self._admit(admission, identity.serial, None, prove_writable=False)
        return identity, endpoint

    async def _authenticate(
        self, peer: Peer, entry: AuditEntry, asks: SessionAsked | None
    ) -> tuple[Caller, SessionFound | None]:
        """Rule 1; a refused caller is recorded as such, a store outage as the exchange."""
        try:
            if asks is not None:
                return await self._authenticator.caller_and_session(peer, asks)
            return await self._authenticator.caller(peer), None
        except CallerRefused as refused:
            await self._refused(refused, peer)
            raise
        except TrafficCenterError as error:
            await self._audit.failed(entry, error)
            raise

    async def _admit(
        self,
        admission: Admission,
        serial: str,
        entry: AuditEntry | None,
        *,
        prove_writable: bool,
    ) -> None:
        """Rule 9, before the record is opened: a limited caller costs one counted record per
        window, like a refused one, not one record per request.

        ``prove_writable``: the log is proven writable too (fail closed, 503
        ``AuditNietBeschikbaar``), in the same store transaction as the hit (issue 14).
        """
        try:
            if prove_writable:
                hits = await self._audit.count_and_ensure_writable(admission.hit)
            else:
                hits = await self._limiter.count(admission)
            admission.judge(hits)
        except RateLimited as limited:
            await self._refusals.note(limited, serial=serial)
            raise
        except TrafficCenterError as error:  # the store is down: recorded as the exchange
            if entry is not None:
                await self._audit.failed(entry, error)
            raise
        except Exception as unexpected:
            # While the log was being proven writable: on the record as any exchange's
            # internal error, as when the probe ran in the exchange's own body.
            if entry is None or not prove_writable:
                raise
            _log_internal_error(entry, unexpected)
            await self._audit.finished(entry, INTERNAL_ERROR, http_status=500)
            raise InternalError() from None
        except BaseException:  # cancelled: the client hung up; recorded as in the body
            if entry is not None and prove_writable:
                await self._audit.finished(entry, DOEL_DISCONNECTED, http_status=None)
            raise

    async def _end_with_error(self, exchange: Exchange, error: TrafficCenterError) -> None:
        """The record closes with the error; a caller over its budget gets its 429 instead,
        recorded as a counted refusal with no record of the exchange, as at admission."""
        serial = exchange.caller.identity.serial
        if exchange.limited:  # open() counted the hit over the budget: ``error`` is the 429
            await self._refusals.note(error, serial=serial)
            return
        admission, exchange.uncounted = exchange.uncounted, None
        if admission is not None:
            # Refused before its started record: the hit counts all the same (a caller that
            # keeps hammering stays limited), and over the budget the answer is the 429 it
            # had before its hit was counted with the started record.
            try:
                hits = await self._limiter.count(admission)
            except TrafficCenterError:
                pass  # the store is away: the exchange's own error is recorded (or waits)
            else:
                try:
                    admission.judge(hits)
                except RateLimited as limited:
                    await self._refusals.note(limited, serial=serial)
                    raise limited from None
        await exchange.close_with_error(error)

    async def _refused(self, refused: CallerRefused, peer: Peer) -> None:
        self._metrics.refused_callers.labels(reason=refused.code).inc()
        certificate = self._authenticator.certificate_on_record(peer, refused)
        # Serial and fingerprint name the certificate on the warning line; nothing else of
        # the caller's (no body, no subject text) is logged.
        await self._refusals.note(
            refused,
            serial=serial_hex(certificate) if certificate is not None else None,
            fingerprint=fingerprint_sha256(certificate) if certificate is not None else None,
        )


def _log_internal_error(entry: AuditEntry, unexpected: Exception) -> None:
    log.error(
        "exchange_internal_error",
        type=entry.type.value,
        transaction_id=entry.transaction_id,
        error=type(unexpected).__name__,
        where=raised_at(unexpected),
    )


def _file_under(entry: AuditEntry, caller: Caller, role: Role) -> None:
    """The caller's side of the record, so its own GET /v1/audit shows the exchange."""
    entry.caller_serial = caller.identity.serial
    if role == "doel":
        entry.doel_brin, entry.doel_routeringskenmerk = caller.brin, caller.routeringskenmerk
    else:
        entry.bron_brin, entry.bron_routeringskenmerk = caller.brin, caller.routeringskenmerk
