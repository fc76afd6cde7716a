"""What the Traffic Center calls on a LAS endpoint, published as OpenAPI webhooks.

Never served by the Traffic Center: a vendor's LAS implements these (the reference LAS in
``traffic_center.las`` does), at the URL registered for its endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from traffic_center.api.responses import problem_responses
from traffic_center.api.schemas import (
    SESSIE_ID,
    LasDossierRequest,
    LasFeedback,
    LasFeedbackAnswer,
    LasNotification,
    LasNotificationAnswer,
)
from traffic_center.domain import errors as e
from traffic_center.domain.las_contract import (
    DOSSIER_MEDIA_TYPE,
    RELEASE_HEADER,
    SESSION_HEADER,
    TRACEPARENT_HEADER,
    TRANSACTION_HEADER,
)

webhooks = APIRouter(tags=["LAS endpoint (implemented by the school's LAS)"])

_CALLED_OVER_MTLS = (
    "Called over mTLS with the Traffic Center's relay certificate (SAN URI "
    "`urn:oso:traffic-center:relay`, issued by the TC CA); verify it, and present a server "
    "certificate the TC trusts."
)
_CALLER = (
    f"{_CALLED_OVER_MTLS} Request headers: `{SESSION_HEADER}`, `{TRANSACTION_HEADER}`, "
    f"`{TRACEPARENT_HEADER}`."
)

# What the Traffic Center sends with every call: parameters, so a vendor's server stub has them.
_REQUEST_HEADERS: dict[str, Any] = {
    "parameters": [
        {
            "name": SESSION_HEADER,
            "in": "header",
            "required": True,
            "description": "the session, as in the body's sessie_id",
            "schema": {"type": "string", **SESSIE_ID},
        },
        {
            "name": TRANSACTION_HEADER,
            "in": "header",
            "required": True,
            "description": "this exchange's id, also in the Traffic Center's audit record",
            "schema": {"type": "string", "format": "uuid"},
        },
        {
            "name": TRACEPARENT_HEADER,
            "in": "header",
            "required": False,
            "description": "W3C trace context, continued from the doel's call",
            "schema": {"type": "string", "maxLength": 128},
        },
    ]
}
# The answers the Traffic Center understands from a LAS: the shared Problem, `code` the OSO
# result code (the reference LAS answers exactly these, traffic_center/las/messages.py). The
# Traffic Center reads `code` only; a LAS's `type` may be anything.
_BRON_ANSWERS = problem_responses(
    e.DossierNietGevonden,
    e.DossierNogNietGereed,
    e.DossierVerouderd,
    e.GeenInzage,
    e.GeenToestemming,
)


@webhooks.post(
    "las-dossier",
    summary="POST {endpoint url}/dossier: documentRequest, as the bron's LAS receives it",
    description=_CALLER,
    response_class=Response,
    openapi_extra=_REQUEST_HEADERS,
    responses={
        200: {
            "description": (
                "The dossier (OSO gegevensset XML), for the pupil the `zoeksleutel` names, or "
                "for an `swv-dossier` the one your notification to the SWV issued the "
                f"`koppelsleutel` for. Send `{RELEASE_HEADER}: inzage` (PO→PO, "
                "PO→VO) or `toestemming` (VO→VO); without it the Traffic Center refuses to "
                "forward an overstapdossier."
            ),
            "content": {
                DOSSIER_MEDIA_TYPE: {
                    "schema": {"type": "string", "format": "binary"},
                    "example": '<dossier xmlns="http://www.edustandaard.nl/oso_gegevensset/2019/dossier"/>',
                }
            },
            "headers": {
                RELEASE_HEADER: {
                    "description": "the parents' release you attest",
                    "schema": {"type": "string", "enum": ["inzage", "toestemming"]},
                }
            },
        },
        **_BRON_ANSWERS,
    },
)
def las_dossier(body: LasDossierRequest) -> None:
    """Documentation only."""


@webhooks.post(
    "las-notification",
    summary="POST {endpoint url}/notification: a notification, as the doel's LAS receives it",
    description=_CALLER
    + " Answer 200 with `NotificatieOntvangen`. On an SWV endpoint the notification carries a "
    "`koppelsleutel` and no `sessie_id`: a school's dossier awaits (the SWV flow).",
    response_model=LasNotificationAnswer,
    openapi_extra=_REQUEST_HEADERS,
    responses=problem_responses(),
)
def las_notification(body: LasNotification) -> LasNotificationAnswer:
    """Documentation only."""
    raise NotImplementedError


@webhooks.post(
    "las-terugkoppeling",
    summary="POST {endpoint url}/terugkoppeling: the SWV's feedback, as the school's LAS gets it",
    description=f"{_CALLED_OVER_MTLS} Request headers: `{TRANSACTION_HEADER}`, "
    f"`{TRACEPARENT_HEADER}`; no `{SESSION_HEADER}`: the `koppelsleutel` names the case. "
    "Sent once per koppelsleutel; "
    "answer 200 with `TerugkoppelingOntvangen` (anything else lets the SWV send it again).",
    response_model=LasFeedbackAnswer,
)
def las_terugkoppeling(body: LasFeedback) -> LasFeedbackAnswer:
    """Documentation only."""
    raise NotImplementedError
