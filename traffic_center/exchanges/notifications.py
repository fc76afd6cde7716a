"""meldenNotificatieRequest through the Traffic Center: the bron tells the doel "it is ready".

Rule 6: only to a doel endpoint that asked this bron for a dossier, in that very session. The
session may since have been closed (typically with DossierNogNietGereed): that is the point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from traffic_center.audit.entry import AuditEntry
from traffic_center.broker.caller import Caller
from traffic_center.domain.audit import INTERNAL_ERROR, AuditType
from traffic_center.domain.errors import (
    AanleverpuntNietActief,
    NotificationNotRequested,
    SessionNotFound,
    TrafficCenterError,
    UpstreamInvalidAnswer,
)
from traffic_center.domain.identifiers import (
    parse_routeringskenmerk,
    parse_sessie_id,
    refuse_clear_pupil_numbers,
)
from traffic_center.domain.las_contract import NOTIFICATION_PATH
from traffic_center.domain.models import Endpoint
from traffic_center.domain.results import ResultCode
from traffic_center.exchanges.base import RelayExchange
from traffic_center.relay.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    sessie_id: str
    doel_routeringskenmerk: str


@dataclass(frozen=True, slots=True)
class NotificationDelivered:
    transaction_id: str
    resultaat: str


class NotificationRelay(RelayExchange):
    kind = AuditType.NOTIFICATION

    async def deliver(
        self, caller: Caller, request: NotificationRequest, *, traceparent: str | None
    ) -> NotificationDelivered:
        exchange = self._audit.begin(self.kind, caller_serial=caller.identity.serial)
        try:
            upstream = self._configured_upstream()
            doel_endpoint = await self._authorise(caller, request, exchange)
            await self._audit.ensure_writable()  # fail closed: unrecorded means not forwarded
            upstream.acquire_slot()
            try:
                resultaat = await self._forward(
                    upstream, caller, doel_endpoint, exchange, traceparent
                )
            finally:
                upstream.release_slot()
        except TrafficCenterError as refused:
            self._count_if_upstream_failure(refused)
            await self._audit.failed(exchange, refused)
            raise
        except Exception:
            await self._audit.finished(exchange, INTERNAL_ERROR, http_status=500)
            raise
        await self._audit.finished(exchange, resultaat, http_status=200)
        return NotificationDelivered(exchange.transaction_id, resultaat)

    async def _authorise(
        self, caller: Caller, request: NotificationRequest, exchange: AuditEntry
    ) -> Endpoint:
        # A sessie_id is a UUID (parsed below); only the free-text field can hide a number.
        refuse_clear_pupil_numbers([("doel_routeringskenmerk", request.doel_routeringskenmerk)])
        doel_routeringskenmerk = parse_routeringskenmerk(request.doel_routeringskenmerk)
        session = await self._store.sessions.get(parse_sessie_id(request.sessie_id))
        if session is None or not self._broker.is_bron(caller, session):
            raise SessionNotFound()  # design rule 4: not yours, so it does not exist
        exchange.concerns(session, bron_routeringskenmerk=caller.routeringskenmerk)
        if session.doel_routeringskenmerk != doel_routeringskenmerk:
            raise NotificationNotRequested(
                f"{doel_routeringskenmerk} did not ask for a dossier in session {session.sessie_id}"
            )
        found = await self._store.registry.endpoint_with_school(doel_routeringskenmerk)
        if found is None or not (found[0].active and found[1].active):
            raise AanleverpuntNietActief(
                f"the doel endpoint {doel_routeringskenmerk} is not active"
            )
        return found[0]

    async def _forward(
        self,
        upstream: UpstreamClient,
        caller: Caller,
        doel_endpoint: Endpoint,
        exchange: AuditEntry,
        traceparent: str | None,
    ) -> str:
        body = {
            "sessie_id": exchange.sessie_id,
            "bron_brin": caller.brin,
            "bron_routeringskenmerk": caller.routeringskenmerk,
        }
        headers = {**exchange.upstream_headers(traceparent), "Accept": "application/json"}
        exchange.forwarded_at = self._clock()
        response = await upstream.open(
            doel_endpoint.url.rstrip("/") + NOTIFICATION_PATH, body, headers
        )
        try:
            self._upstream_answered(exchange, response.status_code)
            answer = await upstream.read_answer(response)
        finally:
            await upstream.release(response)
        return _received(response, answer)


def _received(response: httpx.Response, answer: bytes) -> str:
    """The doel must confirm with NotificatieOntvangen; anything else is not a delivery."""
    expected = ResultCode.NOTIFICATIE_ONTVANGEN.value
    if response.status_code == httpx.codes.OK:
        try:
            parsed = json.loads(answer)
        except (ValueError, RecursionError):  # not JSON, or absurdly nested
            parsed = None
        if isinstance(parsed, dict) and parsed.get("resultaat") == expected:
            return expected
    raise UpstreamInvalidAnswer(f"the doel answered HTTP {response.status_code} without {expected}")
