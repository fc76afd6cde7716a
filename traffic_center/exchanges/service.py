"""The exchanges a caller can start, each one call: the api's routes parse and call these.

Each method runs its exchange through the one runner (authenticate, open the record, act,
close the record on every exit) and lets the broker decide; none re-checks a rule itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from traffic_center.broker.caller import CertificateIdentity, Peer
from traffic_center.broker.service import (
    Broker,
    CheckRequest,
    DossierRequest,
    FeedbackRequest,
    GrantedSession,
    NotificationRequest,
    SessionRequest,
    SwvNotificationRequest,
)
from traffic_center.domain.audit import DONE, SESSION_GRANTED, AuditType, ChainedRecord
from traffic_center.domain.errors import RateLimited, TrafficCenterError
from traffic_center.domain.identifiers import looks_like_pupil_number
from traffic_center.domain.models import Endpoint, Session
from traffic_center.domain.results import ResultCode
from traffic_center.exchanges.dossiers import DossierRelay, RelayedDossier
from traffic_center.exchanges.notifications import NotificationRelay
from traffic_center.exchanges.runner import ExchangeRunner
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.exchanges")
# The debug line of every overdrachtRequest attempt (see Exchanges._log_open_attempt).
OPEN_ATTEMPT_EVENT = "session_open_attempt"


@dataclass(frozen=True, slots=True)
class NotificationDelivered:
    transaction_id: str
    resultaat: str


@dataclass(frozen=True, slots=True)
class SwvNotificationDelivered:
    transaction_id: str
    resultaat: str
    koppelsleutel: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: dt.datetime | None
    until: dt.datetime | None
    after_id: int
    limit: int


@dataclass(frozen=True, slots=True)
class Identity:
    """whoami: what the certificate says, and the endpoint it is registered to, if any."""

    certificate: CertificateIdentity
    endpoint: Endpoint | None


class Exchanges:
    def __init__(
        self,
        *,
        runner: ExchangeRunner,
        broker: Broker,
        dossiers: DossierRelay,
        notifications: NotificationRelay,
        store: Store,
    ) -> None:
        self._runner = runner
        self._broker = broker
        self._dossiers = dossiers
        self._notifications = notifications
        self._store = store

    async def screen(self, peer: Peer) -> Peer:
        """Rule 1's certificate checks before the request is read; a refusal is recorded.
        The peer, as identified: the exchange of the same request need not ask again."""
        return replace(peer, screened=await self._runner.identify(peer))

    async def whoami(self, peer: Peer) -> Identity:
        return Identity(*await self._runner.whoami(peer))

    async def list_endpoints(
        self, peer: Peer, *, brin: str | None, kind: str | None, routeringskenmerk: str | None
    ) -> Sequence[Endpoint]:
        """overzichtAanleverpuntRequest."""
        async with self._runner.run(AuditType.ENDPOINT_OVERVIEW, peer, role="doel") as ex:
            found = await self._broker.list_endpoints(
                ex.caller, brin=brin, kind=kind, routeringskenmerk=routeringskenmerk
            )
            ex.succeed(DONE, http_status=200)
        return found

    async def open_session(
        self, peer: Peer, request: SessionRequest, *, idempotency_key: str | None
    ) -> GrantedSession:
        """overdrachtRequest."""
        arrived_at = dt.datetime.now(dt.UTC)
        try:
            async with self._runner.run(AuditType.SESSION, peer, role="doel") as ex:
                granted = await self._broker.grant(
                    ex.caller, request, idempotency_key=idempotency_key, note=ex.entry
                )
                ex.succeed(SESSION_GRANTED, http_status=201)
        except TrafficCenterError as refused:
            self._log_open_attempt(request, idempotency_key, arrived_at, refused.code, refused)
            raise
        self._log_open_attempt(request, idempotency_key, arrived_at, SESSION_GRANTED, granted)
        return granted

    def _log_open_attempt(
        self,
        request: SessionRequest,
        idempotency_key: str | None,
        arrived_at: dt.datetime,
        result: str,
        outcome: GrantedSession | TrafficCenterError,
    ) -> None:
        """Every attempt at an open, at debug level: the record of a 429 is one per window
        (refusals cost nothing lasting), so only this line shows each retry, its time and its
        key (as the session keeps it: an HMAC). The qualification sandbox judges a doel's
        retries by it (docs/vendors.md); a production node at info writes nothing, and
        computes nothing for it (two HMACs per open)."""
        if not log.isEnabledFor(logging.DEBUG):
            return
        marks = self._broker.open_marks(request, idempotency_key)
        log.debug(
            OPEN_ATTEMPT_EVENT,
            arrived_at=arrived_at.isoformat(),
            result=result,
            retry_after_seconds=(
                outcome.retry_after_seconds if isinstance(outcome, RateLimited) else None
            ),
            sessie_id=outcome.session.sessie_id if isinstance(outcome, GrantedSession) else None,
            replayed=outcome.replayed if isinstance(outcome, GrantedSession) else None,
            idempotency_key_hmac=marks.idempotency_key_hmac,
            request_hmac=marks.request_hmac,
        )

    async def check_session(self, peer: Peer, sessie_id: str, request: CheckRequest) -> Session:
        """sessiecontroleRequest."""
        async with self._runner.run(AuditType.CHECK, peer, role="bron", sessie_id=sessie_id) as ex:
            session = await self._broker.check(ex.caller, sessie_id, request, note=ex.entry)
            ex.succeed(ResultCode.SESSIE_VALIDE.value, http_status=200)
        return session

    async def close_session(
        self, peer: Peer, sessie_id: str, *, resultaat: str, routeringskenmerk: str
    ) -> Session:
        """afmeldingRequest."""
        async with self._runner.run(
            AuditType.CLOSE,
            peer,
            role="doel",
            sessie_id=sessie_id,
            asks=self._broker.bron_endpoint_asks(sessie_id, routeringskenmerk),
        ) as ex:
            closed = await self._broker.close(
                ex.caller,
                sessie_id,
                resultaat=resultaat,
                routeringskenmerk=routeringskenmerk,
                note=ex.entry,
                read=ex.session_found,
            )
            assert closed.result is not None
            ex.succeed(closed.result.value, http_status=200)
        return closed

    async def fetch_dossier(
        self,
        peer: Peer,
        sessie_id: str,
        request: DossierRequest,
        *,
        traceparent: str | None,
    ) -> RelayedDossier:
        """documentRequest, relayed: the record closes when the stream ends."""
        async with self._runner.run(
            AuditType.DOSSIER,
            peer,
            role="doel",
            sessie_id=sessie_id,
            two_phase=True,
            asks=self._broker.bron_endpoint_asks(sessie_id, request.routeringskenmerk),
        ) as ex:
            authorised = await self._broker.authorise_dossier(
                ex.caller, sessie_id, request, note=ex.entry, read=ex.session_found
            )
            relayed = await self._dossiers.start(
                ex, authorised, request, traceparent=passable_traceparent(traceparent)
            )
        # Returned after the runner's exit (which leaves a handed-off record open for the stream).
        return relayed  # noqa: RET504

    async def notify(
        self, peer: Peer, request: NotificationRequest, *, traceparent: str | None
    ) -> NotificationDelivered:
        """meldenNotificatieRequest, relayed to the doel endpoint that asked."""
        async with self._runner.run(
            AuditType.NOTIFICATION,
            peer,
            role="bron",
            sessie_id=request.sessie_id,
            two_phase=True,
            asks=self._broker.notification_asks(request),
        ) as ex:
            authorised = await self._broker.authorise_notification(
                ex.caller, request, note=ex.entry, read=ex.session_found
            )
            resultaat = await self._notifications.deliver(
                ex, authorised, traceparent=passable_traceparent(traceparent)
            )
            ex.succeed(resultaat, http_status=200)
        return NotificationDelivered(ex.entry.transaction_id, resultaat)

    async def notify_swv(
        self, peer: Peer, request: SwvNotificationRequest, *, traceparent: str | None
    ) -> SwvNotificationDelivered:
        """meldenNotificatieRequest from a school to its SWV: issues the koppelsleutel."""
        async with self._runner.run(
            AuditType.SWV_NOTIFICATION, peer, role="bron", two_phase=True
        ) as ex:
            authorised = await self._broker.authorise_swv_notification(
                ex.caller, request, note=ex.entry
            )
            resultaat = await self._notifications.deliver_swv(
                ex, authorised, traceparent=traceparent
            )
            ex.succeed(resultaat, http_status=200)
        return SwvNotificationDelivered(
            ex.entry.transaction_id, resultaat, authorised.koppelsleutel
        )

    async def give_feedback(
        self, peer: Peer, request: FeedbackRequest, *, traceparent: str | None
    ) -> NotificationDelivered:
        """meldenTerugkoppelingRequest: the SWV's feedback, relayed once to the school."""
        async with self._runner.run(AuditType.FEEDBACK, peer, role="doel", two_phase=True) as ex:
            authorised = await self._broker.authorise_feedback(ex.caller, request, note=ex.entry)
            try:
                resultaat = await self._notifications.deliver_feedback(
                    ex, authorised, request.terugkoppeling, traceparent=traceparent
                )
            except BaseException:
                # Not delivered (refused, LAS failed, log not writable, cancelled): not given.
                await self._broker.feedback_undelivered(authorised)
                raise
            ex.succeed(resultaat, http_status=200)
        return NotificationDelivered(ex.entry.transaction_id, resultaat)

    async def read_audit(self, peer: Peer, query: AuditQuery) -> Sequence[ChainedRecord]:
        """A party's own audit records (where its endpoint is doel or bron)."""
        async with self._runner.run(AuditType.AUDIT_READ, peer, role="doel") as ex:
            found = await self._store.audit.for_party(
                ex.caller.routeringskenmerk,
                since=query.since,
                until=query.until,
                after_id=query.after_id,
                limit=query.limit,
            )
            ex.succeed(DONE, http_status=200)
        return found


def passable_traceparent(traceparent: str | None) -> str | None:
    """The caller's traceparent, unless it could carry a pupil number onward (rule 7).

    Its trace id is forwarded to the other LAS, so the PGN guard reads it; a hit drops the
    header (the relay starts a fresh trace, as W3C Trace Context does for one it cannot use)
    instead of refusing: a random trace id looks like a PGN now and then by chance.
    """
    if traceparent is not None and looks_like_pupil_number(traceparent):
        return None
    return traceparent
