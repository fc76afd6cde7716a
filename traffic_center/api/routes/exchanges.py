"""The relayed OSO messages: documentRequest (the dossier, streamed) and the notification."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from traffic_center.api.identity import PeerDep, ServicesDep
from traffic_center.api.responses import (
    EXCHANGE_ERRORS,
    problem_responses,
)
from traffic_center.api.schemas import DossierRequestBody, NotificationBody, NotificationDelivered
from traffic_center.broker.service import DossierRequest, NotificationRequest
from traffic_center.domain import errors as e
from traffic_center.domain.las_contract import (
    DOSSIER_MEDIA_TYPE,
    RELEASE_HEADER,
    TRACEPARENT_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.exchanges.dossiers import RelayedDossier

router = APIRouter(tags=["relay"])

_RELAY_ERRORS = (
    e.RelayNotConfigured,
    e.RelayBusy,
    e.UpstreamUnreachable,
    e.UpstreamTimeout,
    e.UpstreamInvalidAnswer,
)
_TRACEPARENT = Annotated[
    str | None,
    Header(
        alias=TRACEPARENT_HEADER,
        max_length=128,
        description="W3C trace context; continued on the call to the LAS",
    ),
]


class RelayResponse(StreamingResponse):
    """Streams the bron's answer and always gives back the upstream connection and slot.

    If the bron breaks off, the body iterator raises and the server drops the doel's
    connection: the doel sees a truncated transfer, never a complete-looking 200. Every send
    goes through the relay's write guard, so a doel that stops reading is cut off too.
    """

    def __init__(self, relayed: RelayedDossier) -> None:
        super().__init__(relayed.body, headers=relayed.headers, media_type=None)
        self._relayed = relayed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def guarded(message: Message) -> None:
            await self._relayed.write(send(message))

        try:
            await super().__call__(scope, receive, guarded)
        finally:
            await self._relayed.finish()


@router.post(
    "/v1/sessions/{sessie_id}/dossier",
    summary="documentRequest: fetch the dossier from a bron endpoint, streamed through (doel)",
    description=(
        "The Traffic Center checks the session (caller is its doel, open, the zoeksleutel "
        "matches, the endpoint is the bron's), calls the bron's `POST {url}/dossier` over mTLS "
        "and streams the XML back byte for byte. A result code the bron answers instead "
        "(`DossierNietGevonden`, `DossierNogNietGereed`, `GeenInzage`, …) is passed through. "
        "If the transfer breaks off after the headers, the connection is closed before the "
        "declared length or the final chunk: treat a truncated body as `OverdrachtMislukt`."
    ),
    response_class=RelayResponse,
    status_code=200,
    responses={
        200: {
            "description": "The dossier, as the bron sent it",
            "content": {DOSSIER_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                TRANSACTION_HEADER: {
                    "description": "this exchange's id, also in the audit record",
                    "schema": {"type": "string", "format": "uuid"},
                },
                RELEASE_HEADER: {
                    "description": "the parents' release the bron attested: inzage or toestemming",
                    "schema": {"type": "string", "enum": ["inzage", "toestemming"]},
                },
            },
        },
        **problem_responses(
            *EXCHANGE_ERRORS,
            e.InvalidSessieId,
            e.InvalidRouteringskenmerk,
            e.InvalidZoeksleutel,
            e.ClearPupilNumber,
            e.SessionNotFound,
            e.WrongRole,
            e.SessieAfwijkend,
            e.SessieReedsAfgemeld,
            e.SessieVerlopen,
            e.OnbekendAanleverpunt,
            e.AanleverpuntNietActief,
            e.DossierNietGevonden,
            e.DossierNogNietGereed,
            e.DossierVerouderd,
            e.GeenInzage,
            e.GeenToestemming,
            e.DossierTooLarge,
            *_RELAY_ERRORS,
        ),
    },
)
async def relay_dossier(
    sessie_id: str,
    body: DossierRequestBody,
    peer: PeerDep,
    svc: ServicesDep,
    traceparent: _TRACEPARENT = None,
) -> RelayResponse:
    relayed = await svc.exchanges.fetch_dossier(
        peer,
        sessie_id,
        DossierRequest(body.routeringskenmerk, body.zoeksleutel, body.aanvraagdatum),
        traceparent=traceparent,
    )
    return RelayResponse(relayed)


@router.post(
    "/v1/notifications",
    summary="meldenNotificatieRequest: tell the doel that asked that its dossier is ready (bron)",
    description=(
        "Only to the doel endpoint that opened the session on your school (rule 6); the session "
        "may have been closed since. The Traffic Center calls the doel's "
        "`POST {url}/notification` and returns its answer."
    ),
    response_model=NotificationDelivered,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        e.InvalidSessieId,
        e.InvalidRouteringskenmerk,
        e.ClearPupilNumber,
        e.SessionNotFound,
        e.NotificationNotRequested,
        e.AanleverpuntNietActief,
        *_RELAY_ERRORS,
    ),
)
async def relay_notification(
    body: NotificationBody,
    peer: PeerDep,
    svc: ServicesDep,
    traceparent: _TRACEPARENT = None,
) -> NotificationDelivered:
    delivered = await svc.exchanges.notify(
        peer,
        NotificationRequest(body.sessie_id, body.doel_routeringskenmerk),
        traceparent=traceparent,
    )
    return NotificationDelivered(
        resultaat=delivered.resultaat, transactie_id=delivered.transaction_id
    )
