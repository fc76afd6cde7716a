"""GET /v1/whoami: who the Traffic Center thinks the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from traffic_center.api.identity import PeerDep, ServicesDep
from traffic_center.api.responses import CALLER_ERRORS, problem_responses
from traffic_center.api.schemas import WhoAmI

router = APIRouter(tags=["identity"])


@router.get(
    "/v1/whoami",
    summary="Who am I: the identity in your client certificate",
    response_model=WhoAmI,
    responses=problem_responses(*CALLER_ERRORS),
)
async def whoami(peer: PeerDep, svc: ServicesDep) -> WhoAmI:
    found = await svc.exchanges.whoami(peer)
    identity, endpoint = found.certificate, found.endpoint
    return WhoAmI(
        routeringskenmerk=identity.routeringskenmerk,
        name=identity.name,
        serial=identity.serial,
        not_after=identity.not_after,
        brin=endpoint.brin if endpoint else None,
        endpoint_registered=endpoint is not None,
        endpoint_active=bool(endpoint and endpoint.active),
    )
