"""The OSO broker messages: overzichtAanleverpunt, overdracht, sessiecontrole, afmelding."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from traffic_center.api.identity import PeerDep, ServicesDep
from traffic_center.api.plain import PlainCall, PlainRoute, json_answer
from traffic_center.api.responses import (
    EXCHANGE_ERRORS,
    problem_responses,
)
from traffic_center.api.schemas import (
    BRIN,
    ENDPOINT_KIND,
    ROUTERINGSKENMERK,
    BronEndpoint,
    EndpointList,
    EndpointOut,
    SessieIdPath,
    SessionCheckBody,
    SessionCloseBody,
    SessionClosed,
    SessionCreate,
    SessionGranted,
    SessionValid,
)
from traffic_center.api.services import Services
from traffic_center.broker.caller import Peer
from traffic_center.broker.service import CheckRequest, GrantedSession, SessionRequest
from traffic_center.domain import errors as e
from traffic_center.domain.results import ResultCode

router = APIRouter(tags=["sessions"])

IDEMPOTENCY_KEY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Each declared once more as a plain route in front of its declaration (api/plain.py).
OPEN_ROUTE = "/v1/sessions"
CLOSE_ROUTE = "/v1/sessions/{sessie_id}/close"
_IDEMPOTENCY_KEY = Annotated[
    str | None,
    # Not empty: an empty key (or blanks, which HTTP trims away) was kept as a key, so
    # every later open of that endpoint replayed, or was refused as reusing, the first.
    Header(
        min_length=1,
        max_length=200,
        description="retrying with the same key returns the same session",
    ),
]
_ID_ERRORS = (e.InvalidSessieId, e.SessionNotFound, e.WrongRole, e.ClearPupilNumber)
# OpenAPI links: what a client does next with the sessie_id it was granted.
_BY_SESSIE_ID = {"sessie_id": "$response.body#/sessie_id"}
_NEXT = {
    "fetchDossier": ("relay_dossier", "fetch the dossier from a bron endpoint (doel)"),
    "closeSession": ("close_session", "close the session with the best result (doel)"),
    "checkSession": ("check_session", "check a dossier request against it (bron)"),
}
_GRANTED = {
    "description": "The session is granted",
    "headers": {
        REPLAYED_HEADER: {
            "description": "`true` when this is the session granted before for this Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
    "links": {
        name: {"operationId": operation, "parameters": _BY_SESSIE_ID, "description": why}
        for name, (operation, why) in _NEXT.items()
    },
}


@router.get(
    "/v1/endpoints",
    summary="overzichtAanleverpuntRequest: list active endpoints",
    response_model=EndpointList,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        e.InvalidBrin,
        e.InvalidEndpointKind,
        e.InvalidRouteringskenmerk,
        e.ClearPupilNumber,
        e.RateLimited,
    ),
)
async def list_endpoints(
    peer: PeerDep,
    svc: ServicesDep,
    brin: Annotated[str | None, Query(min_length=1, max_length=16, json_schema_extra=BRIN)] = None,
    kind: Annotated[
        str | None, Query(min_length=1, max_length=8, json_schema_extra=ENDPOINT_KIND)
    ] = None,
    routeringskenmerk: Annotated[
        str | None, Query(min_length=1, max_length=40, json_schema_extra=ROUTERINGSKENMERK)
    ] = None,
) -> EndpointList:
    found = await svc.exchanges.list_endpoints(
        peer, brin=brin, kind=kind, routeringskenmerk=routeringskenmerk
    )
    return EndpointList(
        endpoints=[
            EndpointOut(
                routeringskenmerk=x.routeringskenmerk, brin=x.brin, url=x.url, kind=x.kind.value
            )
            for x in found
        ]
    )


@router.post(
    OPEN_ROUTE,
    status_code=201,
    summary="overdrachtRequest: open a session for one dossier (doel)",
    response_model=SessionGranted,
    responses={
        201: _GRANTED,
        **problem_responses(
            *EXCHANGE_ERRORS,
            e.InvalidBrin,
            e.InvalidRouteringskenmerk,
            e.InvalidOverdrachtsoort,
            e.InvalidZoeksleutel,
            e.InvalidKoppelsleutel,
            e.SearchKeyAmbiguous,
            e.SearchKeyWrongKind,
            e.ClearPupilNumber,
            e.IdempotencyKeyReused,
            e.VerstrekkerNietBekend,
            e.GeenRelatieMetDoel,
            e.OnbekendAanleverpunt,
            e.AanleverpuntNietActief,
            # rule 10 (the SWV flow): an swv-dossier from an OV endpoint, an unknown koppelsleutel
            e.AanleverpuntVerkeerdeSoort,
            e.KoppelsleutelNotFound,
            e.RateLimited,
        ),
    },
)
async def open_session(
    body: SessionCreate,
    peer: PeerDep,
    svc: ServicesDep,
    response: Response,
    idempotency_key: _IDEMPOTENCY_KEY = None,
) -> SessionGranted:
    # The operation as the contract declares it; open_session_route answers it in the app.
    # (A comment: a docstring would become the operation's description.)
    granted = await _open(svc, peer, body, idempotency_key)
    if granted.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return _granted(granted)


def open_session_route() -> PlainRoute:
    """overdrachtRequest as plain ASGI, in front of its declaration (issue 14)."""
    return PlainRoute(
        OPEN_ROUTE,
        name="open_session_asgi",
        body=SessionCreate,
        handler=_open_session_plain,
        headers={IDEMPOTENCY_KEY_HEADER: _IDEMPOTENCY_KEY},
    )


async def _open_session_plain(call: PlainCall[SessionCreate]) -> Response:
    granted = await _open(call.services, call.peer, call.body, call.headers[IDEMPOTENCY_KEY_HEADER])
    answer = json_answer(_granted(granted).model_dump_json(by_alias=True), status_code=201)
    if granted.replayed:
        answer.headers[REPLAYED_HEADER] = "true"
    return answer


async def _open(
    svc: Services, peer: Peer, body: SessionCreate, idempotency_key: str | None
) -> GrantedSession:
    return await svc.exchanges.open_session(
        peer, SessionRequest(**body.model_dump()), idempotency_key=idempotency_key
    )


def _granted(granted: GrantedSession) -> SessionGranted:
    return SessionGranted(
        sessie_id=granted.session.sessie_id,
        bron_endpoints=[
            BronEndpoint(routeringskenmerk=x.routeringskenmerk, url=x.url)
            for x in granted.bron_endpoints
        ],
        expires_at=granted.session.expires_at,
    )


@router.post(
    "/v1/sessions/{sessie_id}/check",
    summary="sessiecontroleRequest: check a dossier request against its session (bron)",
    response_model=SessionValid,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        *_ID_ERRORS,
        e.InvalidBrin,
        e.InvalidRouteringskenmerk,
        e.InvalidOverdrachtsoort,
        e.InvalidZoeksleutel,
        e.InvalidKoppelsleutel,
        e.SearchKeyAmbiguous,
        e.SearchKeyWrongKind,
        e.SessieAfwijkend,
        e.SessieReedsAfgemeld,
        e.SessieVerlopen,
    ),
)
async def check_session(
    sessie_id: SessieIdPath, body: SessionCheckBody, peer: PeerDep, svc: ServicesDep
) -> SessionValid:
    session = await svc.exchanges.check_session(peer, sessie_id, CheckRequest(**body.model_dump()))
    return SessionValid(
        resultaat=ResultCode.SESSIE_VALIDE.value,
        doel_sector=session.doel_sector.value,
        sessie_id=session.sessie_id,
    )


@router.post(
    CLOSE_ROUTE,
    summary="afmeldingRequest: close the session with the best result (doel)",
    response_model=SessionClosed,
    responses=problem_responses(
        *EXCHANGE_ERRORS,
        *_ID_ERRORS,
        e.InvalidResultCode,
        e.InvalidRouteringskenmerk,
        e.OnbekendAanleverpunt,
        e.ResultNotWitnessed,
        e.SessieReedsAfgemeld,
        e.SessieVerlopen,
    ),
)
async def close_session(
    sessie_id: SessieIdPath, body: SessionCloseBody, peer: PeerDep, svc: ServicesDep
) -> SessionClosed:
    # The operation as the contract declares it; close_session_route answers it in the app.
    return await _close(svc, peer, sessie_id, body)


def close_session_route() -> PlainRoute:
    """afmeldingRequest as plain ASGI, in front of its declaration (issue 14)."""
    return PlainRoute(
        CLOSE_ROUTE,
        name="close_session_asgi",
        body=SessionCloseBody,
        handler=_close_session_plain,
        path_params={"sessie_id": SessieIdPath},
    )


async def _close_session_plain(call: PlainCall[SessionCloseBody]) -> Response:
    closed = await _close(call.services, call.peer, call.path["sessie_id"], call.body)
    return json_answer(closed.model_dump_json(by_alias=True))


async def _close(
    svc: Services, peer: Peer, sessie_id: str, body: SessionCloseBody
) -> SessionClosed:
    closed = await svc.exchanges.close_session(
        peer, sessie_id, resultaat=body.resultaat, routeringskenmerk=body.routeringskenmerk
    )
    assert closed.result is not None
    assert closed.closed_at is not None
    return SessionClosed(
        sessie_id=closed.sessie_id,
        state=closed.state.value,
        resultaat=closed.result.value,
        routeringskenmerk=closed.result_routeringskenmerk or body.routeringskenmerk,
        closed_at=closed.closed_at,
    )
