"""What the Traffic Center calls on a LAS endpoint, published as OpenAPI webhooks.

Never served by the Traffic Center: a vendor's LAS implements these (the reference LAS in
``traffic_center.las`` does), at the URL registered for its endpoint.
"""

from __future__ import annotations

from fastapi import APIRouter

from traffic_center.api.schemas import (
    LasDossierRequest,
    LasFeedback,
    LasFeedbackAnswer,
    LasNotification,
    LasNotificationAnswer,
    Problem,
)
from traffic_center.domain.las_contract import (
    DOSSIER_MEDIA_TYPE,
    RELEASE_HEADER,
    SESSION_HEADER,
    TRACEPARENT_HEADER,
    TRANSACTION_HEADER,
)

webhooks = APIRouter(tags=["LAS endpoint (implemented by the school's LAS)"])

_CALLER = (
    "Called over mTLS with the Traffic Center's relay certificate (SAN URI "
    "`urn:oso:traffic-center:relay`, issued by the TC CA); verify it, and present a server "
    f"certificate the TC trusts. Request headers: `{SESSION_HEADER}`, `{TRANSACTION_HEADER}`, "
    f"`{TRACEPARENT_HEADER}`."
)

_BRON_CODES = {
    "404": ("DossierNietGevonden", "no dossier for this zoeksleutel"),
    "409": ("DossierNogNietGereed or DossierVerouderd", "not ready yet, or not newer"),
    "403": ("GeenInzage or GeenToestemming", "the parents' release is missing"),
}


@webhooks.post(
    "las-dossier",
    summary="POST {endpoint url}/dossier: documentRequest, as the bron's LAS receives it",
    description=_CALLER,
    responses={
        200: {
            "description": (
                "The dossier (OSO gegevensset XML), for the pupil the `zoeksleutel` names, or "
                "for an `swv-dossier` the one your notification to the SWV issued the "
                f"`koppelsleutel` for. Send `{RELEASE_HEADER}: inzage` (PO→PO, "
                "PO→VO) or `toestemming` (VO→VO); without it the Traffic Center refuses to "
                "forward an overstapdossier."
            ),
            "content": {DOSSIER_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **{
            status: {
                "description": f"`code` {codes}: {why}",
                "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
            }
            for status, (codes, why) in _BRON_CODES.items()
        },
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
)
def las_notification(body: LasNotification) -> LasNotificationAnswer:
    """Documentation only."""
    raise NotImplementedError


@webhooks.post(
    "las-terugkoppeling",
    summary="POST {endpoint url}/terugkoppeling: the SWV's feedback, as the school's LAS gets it",
    description=_CALLER
    + f" No `{SESSION_HEADER}`: the `koppelsleutel` names the case. Sent once per koppelsleutel; "
    "answer 200 with `TerugkoppelingOntvangen` (anything else lets the SWV send it again).",
    response_model=LasFeedbackAnswer,
)
def las_terugkoppeling(body: LasFeedback) -> LasFeedbackAnswer:
    """Documentation only."""
    raise NotImplementedError
