"""The relayed OSO messages: documentRequest (the dossier, streamed), the notification, and
the SWV flow's notification and feedback (rule 10)."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import email.message
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from traffic_center.api.identity import PeerDep, ServicesDep, peer_of
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
    """The operation as the contract declares it. In the app, DossierRelayRoute (registered
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


class DossierRelayRoute(Route):
    """documentRequest as plain ASGI: the hot path without FastAPI's per-request body and
    dependency plumbing (issue 14), in front of its declaration above (same path, method).

    The declaration stays the contract's source (openapi.yaml is generated from it); this
    route takes the same parameters with the same types and refuses what they refuse with
    the same RequestValidationError, or the same 400 for a body that is not even JSON, so
    api/problems.py answers every refusal as before. It sits under the same middleware
    (request id, metrics, the request guard) and the same exception handlers.
    """

    def __init__(self) -> None:
        super().__init__(
            DOSSIER_ROUTE,
            _DossierRelayApp(),
            methods=["POST"],
            name="relay_dossier_asgi",
            include_in_schema=False,
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            # As FastAPI's routes do: metrics and the answer line label by this template.
            child_scope["route"] = self
        return match, child_scope


class _DossierRelayApp:
    """Validate, fetch, stream: the same three steps FastAPI took for relay_dossier."""

    def __init__(self) -> None:
        # The declaration's own annotations, so the constraints are written once.
        self._sessie_id = TypeAdapter(SessieIdPath)
        self._traceparent = TypeAdapter(_TRACEPARENT)
        self._body = TypeAdapter(DossierRequestBody)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = await _json_body(Request(scope, receive))
        sessie_id, traceparent, body = self._validated(scope, received)
        services: Services = scope["app"].state.services
        relayed = await _fetch_dossier(services, peer_of(scope), sessie_id, body, traceparent)
        await RelayResponse(relayed)(scope, receive, send)

    def _validated(self, scope: Scope, received: Any) -> tuple[str, str | None, DossierRequestBody]:
        """Every parameter checked, the errors together in FastAPI's order (path, header,
        body) and at its locations."""
        errors: list[dict[str, Any]] = []
        sessie_id = _checked(
            self._sessie_id, scope["path_params"]["sessie_id"], ("path", "sessie_id"), errors
        )
        given = Request(scope).headers.get(TRACEPARENT_HEADER)
        traceparent = (
            None
            if given is None  # absent: the default, unchecked
            else _checked(self._traceparent, given, ("header", TRACEPARENT_HEADER), errors)
        )
        if received is _ABSENT:  # an error, so nothing below returns without a body
            errors.append(
                {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
            )
        else:
            body: DossierRequestBody = _checked(self._body, received, ("body",), errors)
        if errors:
            raise RequestValidationError(errors, body=None if received is _ABSENT else received)
        return sessie_id, traceparent, body


# No body at all; FastAPI's "Field required" at ("body",), not a validation of nothing.
_ABSENT: Any = object()


def _checked(
    adapter: TypeAdapter[Any], value: Any, loc: tuple[str, ...], errors: list[dict[str, Any]]
) -> Any:
    """The value validated as FastAPI validates a parameter; None with its errors noted."""
    try:
        return adapter.validate_python(value, from_attributes=True)
    except ValidationError as invalid:
        errors.extend(
            {**error, "loc": (*loc, *error["loc"])} for error in invalid.errors(include_url=False)
        )
        return None


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads a JSON body parameter: parsed if its content type is JSON
    (application/json or application/*+json), else the raw bytes, which the model then
    refuses; no type at all is not JSON (strict_content_type). JSON that does not parse is
    a validation error at ("body", position); a body that cannot be read or decoded is 400.
    """
    try:
        raw = await request.body()
        if not raw:
            return _ABSENT
        return json.loads(raw) if _declares_json(request.headers.get("content-type")) else raw
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ],
            body=error.doc,
        ) from error
    except Exception as error:  # e.g. not UTF-8, or the doel gone mid-body: as FastAPI does
        raise HTTPException(400, "There was an error parsing the body") from error


def _declares_json(content_type: str | None) -> bool:
    if content_type == "application/json":
        return True  # what every LAS sends; the parse below costs more than the rest
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


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
