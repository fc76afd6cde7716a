"""The relayed OSO messages: documentRequest (the dossier, streamed), the notification, and
the SWV flow's notification and feedback (rule 10)."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from traffic_center.api.identity import PeerDep, ServicesDep
from traffic_center.api.plain import PlainCall, PlainRoute
from traffic_center.api.responses import (
    EXCHANGE_ERRORS,
    problem_responses,
)
from traffic_center.api.schemas import (
    DossierRequestBody,
    FeedbackBody,
    FeedbackDelivered,
    NotificationBody,
    NotificationDelivered,
    SessieIdPath,
    SwvNotificationBody,
    SwvNotificationDelivered,
)
from traffic_center.api.services import Services
from traffic_center.broker.caller import Peer
from traffic_center.broker.service import (
    DossierRequest,
    FeedbackRequest,
    NotificationRequest,
    SwvNotificationRequest,
)
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
    goes through the relay's write guard, so a doel that stops reading is cut off too. A doel
    that hangs up stops the stream, as in Starlette's StreamingResponse; but the stream runs
    in the request's own task, the hang-up watched beside it (Starlette streams in a second
    task under an anyio task group: a task hop and about 0.1 ms more per dossier, issue 14).
    """

    def __init__(self, relayed: RelayedDossier) -> None:
        super().__init__(relayed.body, headers=relayed.headers, media_type=None)
        self._relayed = relayed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with _stopped_by_hang_up(receive):
                await self._stream(send)
        finally:
            await self._relayed.finish()

    async def _stream(self, send: Send) -> None:
        write = self._relayed.write
        start = {"type": "http.response.start", "status": self.status_code}
        await write(send({**start, "headers": self.raw_headers}))
        async for chunk in self._relayed.body:
            await write(send({"type": "http.response.body", "body": chunk, "more_body": True}))
        await write(send({"type": "http.response.body", "body": b"", "more_body": False}))


@asynccontextmanager
async def _stopped_by_hang_up(receive: Receive) -> AsyncIterator[None]:
    """The body cancelled when the doel hangs up (the server's ``http.disconnect``), and the
    cancellation ended here, as Starlette's task group ends it: the stream's record closes
    as broken off by the doel. Any other cancellation (the server stopping) goes on."""
    streaming = asyncio.current_task()
    assert streaming is not None
    hung_up = False

    async def watch() -> None:
        nonlocal hung_up
        while (await receive())["type"] != "http.disconnect":
            pass
        hung_up = True
        streaming.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not hung_up or streaming.uncancel() > 0:
            raise
    finally:
        watcher.cancel()


DOSSIER_ROUTE = "/v1/sessions/{sessie_id}/dossier"


@router.post(
    DOSSIER_ROUTE,
    summary="documentRequest: fetch the dossier from a bron endpoint, streamed through (doel)",
    description=(
        "The Traffic Center checks the session (caller is its doel, open, the key matches: "
        "the zoeksleutel, or for an swv-dossier the koppelsleutel; the endpoint is the "
        "bron's), calls the bron's `POST {url}/dossier` over mTLS "
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
            "content": {
                DOSSIER_MEDIA_TYPE: {
                    "schema": {"type": "string", "format": "binary"},
                    "example": '<dossier xmlns="http://www.edustandaard.nl/oso_gegevensset/2019/dossier"/>',
                }
            },
            "headers": {
                TRANSACTION_HEADER: {
                    "description": "this exchange's id, also in the audit record",
                    "required": True,
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
            e.InvalidKoppelsleutel,
            e.SearchKeyAmbiguous,
            e.SearchKeyWrongKind,
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
    sessie_id: SessieIdPath,
    body: DossierRequestBody,
    peer: PeerDep,
    svc: ServicesDep,
    traceparent: _TRACEPARENT = None,
) -> RelayResponse:
    """The operation as the contract declares it. In the app, dossier_relay_route (registered
    in front of it) answers these requests; this stays whole so the two can be compared."""
    return RelayResponse(await _fetch_dossier(svc, peer, sessie_id, body, traceparent))


async def _fetch_dossier(
    svc: Services,
    peer: Peer,
    sessie_id: str,
    body: DossierRequestBody,
    traceparent: str | None,
) -> RelayedDossier:
    return await svc.exchanges.fetch_dossier(
        peer,
        sessie_id,
        DossierRequest(
            body.routeringskenmerk, body.zoeksleutel, body.aanvraagdatum, body.koppelsleutel
        ),
        traceparent=traceparent,
    )


def dossier_relay_route() -> PlainRoute:
    """documentRequest as plain ASGI, in front of its declaration above (issue 14)."""
    return PlainRoute(
        DOSSIER_ROUTE,
        name="relay_dossier_asgi",
        body=DossierRequestBody,
        handler=_relay_dossier_plain,
        path_params={"sessie_id": SessieIdPath},
        headers={TRACEPARENT_HEADER: _TRACEPARENT},
    )


async def _relay_dossier_plain(call: PlainCall[DossierRequestBody]) -> RelayResponse:
    relayed = await _fetch_dossier(
        call.services,
        call.peer,
        call.path["sessie_id"],
        call.body,
        call.headers[TRACEPARENT_HEADER],
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
        e.WrongRole,
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


@router.post(
    "/v1/swv/notifications",
    summary="meldenNotificatieRequest to an SWV: tell your samenwerkingsverband (school)",
    description=(
        "The SWV flow (rule 10): from your school's OV endpoint to an SWV endpoint of a "
        "samenwerkingsverband; no session comes before it. The Traffic Center issues a "
        "`koppelsleutel`, records (your endpoint, koppelsleutel, SWV endpoint), calls the "
        "SWV's `POST {url}/notification` with it and returns it to you: the SWV asks your "
        "`POST {url}/dossier` with it (an `swv-dossier` session) and sends its feedback to "
        "your `POST {url}/terugkoppeling` with it."
    ),
    response_model=SwvNotificationDelivered,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        e.InvalidRouteringskenmerk,
        e.ClearPupilNumber,
        e.OnbekendAanleverpunt,
        e.GeenRelatieMetDoel,
        e.AanleverpuntVerkeerdeSoort,
        e.AanleverpuntNietActief,
        *_RELAY_ERRORS,
    ),
)
async def relay_swv_notification(
    body: SwvNotificationBody,
    peer: PeerDep,
    svc: ServicesDep,
    traceparent: _TRACEPARENT = None,
) -> SwvNotificationDelivered:
    delivered = await svc.exchanges.notify_swv(
        peer, SwvNotificationRequest(body.doel_routeringskenmerk), traceparent=traceparent
    )
    return SwvNotificationDelivered(
        resultaat=delivered.resultaat,
        koppelsleutel=delivered.koppelsleutel,
        transactie_id=delivered.transaction_id,
    )


@router.post(
    "/v1/swv/feedback",
    summary="meldenTerugkoppelingRequest: the SWV's feedback to the school, once (SWV)",
    description=(
        "Only from the SWV endpoint the koppelsleutel was issued to; the Traffic Center calls "
        "the school endpoint's `POST {url}/terugkoppeling`. Feedback goes once: after the "
        "school confirmed it, another for the same koppelsleutel is refused with "
        "`TerugkoppelingAlGegeven`; if the school did not confirm it, you may send it again."
    ),
    response_model=FeedbackDelivered,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        e.InvalidKoppelsleutel,
        e.ClearPupilNumber,
        e.KoppelsleutelNotFound,
        e.FeedbackAlreadyGiven,
        e.AanleverpuntNietActief,
        *_RELAY_ERRORS,
    ),
)
async def relay_feedback(
    body: FeedbackBody,
    peer: PeerDep,
    svc: ServicesDep,
    traceparent: _TRACEPARENT = None,
) -> FeedbackDelivered:
    delivered = await svc.exchanges.give_feedback(
        peer, FeedbackRequest(body.koppelsleutel, body.terugkoppeling), traceparent=traceparent
    )
    return FeedbackDelivered(resultaat=delivered.resultaat, transactie_id=delivered.transaction_id)
