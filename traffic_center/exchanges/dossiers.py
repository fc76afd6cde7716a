"""documentRequest through the Traffic Center: check, forward, stream back, record.

The dossier is opaque bytes to us. It flows from the bron's socket to the doel's socket in
the chunks it arrives in; nothing holds it whole and nothing writes it anywhere. Its size and
SHA-256 are computed on the way and recorded with the exchange.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from traffic_center.audit.entry import AuditEntry
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.caller import Caller
from traffic_center.domain.audit import DOEL_DISCONNECTED, INTERNAL_ERROR, AuditType
from traffic_center.domain.errors import (
    AanleverpuntNietActief,
    DossierTooLarge,
    OnbekendAanleverpunt,
    SessieAfwijkend,
    TrafficCenterError,
    TransferAborted,
    WrongRole,
)
from traffic_center.domain.identifiers import (
    Overdrachtsoort,
    parse_routeringskenmerk,
    parse_zoeksleutel,
    refuse_clear_pupil_numbers,
)
from traffic_center.domain.las_contract import DOSSIER_PATH, TRANSACTION_HEADER
from traffic_center.domain.models import Endpoint, School, Session
from traffic_center.domain.results import ResultCode
from traffic_center.domain.rules import required_release
from traffic_center.domain.sessions import ensure_open
from traffic_center.exchanges.base import RelayCollaborators, RelayExchange
from traffic_center.exchanges.bron_answers import accept_dossier_answer
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.headers import forwardable_answer_headers
from traffic_center.relay.metering import MeteredStream
from traffic_center.relay.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class DossierRequest:
    """documentRequest as the doel sends it."""

    routeringskenmerk: str
    zoeksleutel: str
    aanvraagdatum: dt.date | None


@dataclass(frozen=True, slots=True)
class Authorised:
    session: Session
    endpoint: Endpoint
    bron_school: School


@dataclass(frozen=True, slots=True)
class RelayedDossier:
    """A dossier on its way: the headers for the doel, and the body as it arrives.

    ``finish`` is idempotent and safe whether or not the body was ever iterated. The response
    awaits it once the doel has the last byte (or is gone), however it ended: it gives back
    the upstream connection and the slot and records the exchange, off the doel's clock.
    """

    headers: dict[str, str]
    body: AsyncIterator[bytes]
    finish: Callable[[], Awaitable[None]]


class DossierRelay(RelayExchange):
    kind = AuditType.DOSSIER

    def __init__(self, collaborators: RelayCollaborators, *, require_release: bool) -> None:
        super().__init__(collaborators)
        self._require_release = require_release

    async def start(
        self, caller: Caller, sessie_id: str, request: DossierRequest, *, traceparent: str | None
    ) -> RelayedDossier:
        """Everything up to the bron's answer headers; refusals raise before a byte is sent."""
        exchange = self._audit.begin(self.kind, caller_serial=caller.identity.serial)
        try:
            upstream = self._configured_upstream()
            authorised = await self._authorise(caller, sessie_id, request, exchange)
            await self._audit.ensure_writable()  # fail closed: unrecorded means not forwarded
            upstream.acquire_slot()
        except TrafficCenterError as refused:
            await self._audit.failed(exchange, refused)
            raise
        try:
            response = await self._forward(upstream, authorised, request, exchange, traceparent)
        except TrafficCenterError as refused:
            upstream.release_slot()
            self._count_if_upstream_failure(refused)
            await self._audit.failed(exchange, refused)
            raise
        except Exception:
            upstream.release_slot()
            await self._audit.finished(exchange, INTERNAL_ERROR, http_status=500)
            raise
        except BaseException:  # cancelled: the doel hung up before the bron answered
            upstream.release_slot()
            await self._audit.finished(exchange, DOEL_DISCONNECTED, http_status=None)
            raise
        streaming = _StreamBack(self._audit, self._metrics, upstream, response, exchange)
        headers = forwardable_answer_headers(response.headers)
        headers[TRANSACTION_HEADER] = exchange.transaction_id
        return RelayedDossier(headers, streaming.body(), streaming.finish)

    # --- before the bron is called ------------------------------------------------------------

    async def _authorise(
        self,
        caller: Caller,
        sessie_id: str,
        request: DossierRequest,
        exchange: AuditEntry,
    ) -> Authorised:
        """The relay is its own session check: doel, open session, bron endpoint, zoeksleutel."""
        # Not the zoeksleutel: its form check replaces the guard (docs/zoeksleutel.md).
        refuse_clear_pupil_numbers([("routeringskenmerk", request.routeringskenmerk)])
        routeringskenmerk = parse_routeringskenmerk(request.routeringskenmerk)
        zoeksleutel = parse_zoeksleutel(request.zoeksleutel)
        session = await self._broker.session_for(caller, sessie_id)
        # The bron endpoint the doel named is recorded only once it is known to be the bron's:
        # else any school could be named, and would then read this transfer in GET /v1/audit.
        exchange.concerns(session)
        if session.doel_routeringskenmerk != caller.routeringskenmerk:
            raise WrongRole("only the doel of the session asks for its dossier")
        ensure_open(session, self._clock())
        expected = self._broker.keyed_hash("zoeksleutel", zoeksleutel)
        if not hmac.compare_digest(expected, session.search_key_hmac):
            raise SessieAfwijkend("the zoeksleutel is not the session's")
        found = await self._store.registry.endpoint_with_school(routeringskenmerk)
        if (
            found is None
            or found[0].brin != session.bron_brin
            or (session.bron_routeringskenmerk not in (None, routeringskenmerk))
        ):
            raise OnbekendAanleverpunt(f"{routeringskenmerk} is not an endpoint of the bron")
        endpoint, bron_school = found
        exchange.bron_routeringskenmerk = endpoint.routeringskenmerk
        if not (endpoint.active and bron_school.active):
            raise AanleverpuntNietActief(f"{routeringskenmerk} is not active")
        return Authorised(session, endpoint, bron_school)

    # --- the call to the bron -----------------------------------------------------------------

    async def _forward(
        self,
        upstream: UpstreamClient,
        authorised: Authorised,
        request: DossierRequest,
        exchange: AuditEntry,
        traceparent: str | None,
    ) -> httpx.Response:
        session = authorised.session
        body = {
            "sessie_id": session.sessie_id,
            "zoeksleutel": request.zoeksleutel,
            "overdrachtsoort": session.overdrachtsoort.value,
            "aanvraagdatum": request.aanvraagdatum.isoformat() if request.aanvraagdatum else None,
            "doel_brin": session.doel_brin,
            "doel_routeringskenmerk": session.doel_routeringskenmerk,
            "doel_sector": session.doel_sector.value,
        }
        headers = {
            **exchange.upstream_headers(traceparent),
            "Accept": "application/xml, application/problem+json",
        }
        exchange.forwarded_at = self._clock()
        response = await upstream.open(
            authorised.endpoint.url.rstrip("/") + DOSSIER_PATH, body, headers
        )
        self._upstream_answered(exchange, response.status_code)
        try:
            await self._accept_answer(upstream, response, authorised)
        except BaseException:
            await upstream.release(response)
            raise
        return response

    async def _accept_answer(
        self, upstream: UpstreamClient, response: httpx.Response, authorised: Authorised
    ) -> None:
        """Raise unless the answer is a dossier we may stream to the doel."""
        session = authorised.session
        needed = (
            required_release(authorised.bron_school.sector, session.doel_sector)
            if self._require_release and session.overdrachtsoort is Overdrachtsoort.OVERSTAPDOSSIER
            else None
        )
        await accept_dossier_answer(upstream, response, release_needed=needed)


class _StreamBack:
    """One dossier on its way from the bron to the doel, and how that ended."""

    def __init__(
        self,
        audit: AuditTrail,
        metrics: Metrics,
        upstream: UpstreamClient,
        response: httpx.Response,
        exchange: AuditEntry,
    ) -> None:
        self._audit = audit
        self._metrics = metrics
        self._upstream = upstream
        self._response = response
        self._exchange = exchange
        self._metered = MeteredStream(response.aiter_raw(), limit=upstream.limits.max_dossier_bytes)
        self._result = DOEL_DISCONNECTED  # unless the stream says otherwise
        self._finished = False

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._metered:
                yield chunk
            self._result = ResultCode.OVERDRACHT_GESLAAGD.value
        except DossierTooLarge as too_large:
            self._result = too_large.code
            raise TransferAborted(too_large.detail) from None
        except httpx.TransportError as broken:
            # The bron hung up or stalled mid-stream: the doel must see a broken transfer.
            # "from None": httpx's message may quote the bytes it choked on (a dossier's),
            # and a chained traceback would put them in the log.
            self._result = ResultCode.OVERDRACHT_MISLUKT.value
            raise TransferAborted(f"the bron's stream broke off: {type(broken).__name__}") from None

    async def finish(self) -> None:
        """Give back the connection and the slot, then record; once, however it ended."""
        if self._finished:
            return
        self._finished = True
        await self._upstream.release(self._response)
        self._upstream.release_slot()
        kind = self._exchange.type.value
        exchange = self._exchange
        exchange.size_bytes, exchange.sha256 = self._metered.size, self._metered.sha256
        self._metrics.relay_bytes.inc(self._metered.size)
        if self._result not in (ResultCode.OVERDRACHT_GESLAAGD.value, DOEL_DISCONNECTED):
            self._metrics.upstream_errors.labels(type=kind, code=self._result).inc()
        record = await self._audit.finished(exchange, self._result, http_status=200)
        assert record.request_in is not None
        self._metrics.relay_duration.labels(type=kind).observe(
            (record.recorded_at - record.request_in).total_seconds()
        )
