"""Request and response bodies of the vendor API (JSON fields use the OSO nouns)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from traffic_center.domain.identifiers import KOPPELSLEUTEL_PATTERN, ZOEKSLEUTEL_PATTERN
from traffic_center.domain.results import closing_results_best_first

# Patterns are documentation for vendors; the domain validates, so errors carry stable codes.
BRIN: JsonDict = {"pattern": "^[0-9]{2}[A-Z]{2}$", "examples": ["12AB"]}
ROUTERINGSKENMERK: JsonDict = {"pattern": "^[0-9]{20}$", "examples": ["00000007000012000001"]}
# Zoeksleutel v1 (docs/zoeksleutel.md): the example is the test vector for PGN 662460613.
ZOEKSLEUTEL: JsonDict = {
    "pattern": ZOEKSLEUTEL_PATTERN,
    "examples": ["rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc"],
}

KOPPELSLEUTEL: JsonDict = {
    "pattern": KOPPELSLEUTEL_PATTERN,
    "examples": ["0F8FAD5B-D9CB-469F-A165-70867728950E"],
}
# The SWV's feedback is relayed to the school, never stored; short, like a message.
MAX_FEEDBACK_CHARS = 2000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhoAmI(BaseModel):
    routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    name: str = Field(description="the organisation (O) in the certificate")
    serial: str = Field(description="certificate serial, upper-case hex")
    not_after: dt.datetime
    brin: str | None = Field(default=None, description="school of the registered endpoint")
    endpoint_registered: bool
    endpoint_active: bool


class EndpointOut(BaseModel):
    routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    brin: str = Field(json_schema_extra=BRIN)
    url: str
    kind: str = Field(json_schema_extra={"enum": ["OV", "SWV"]})


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class SessionCreate(Body):
    """overdrachtRequest: ask a session for one dossier from a bron school."""

    bron_brin: str = Field(max_length=16, json_schema_extra=BRIN)
    bron_routeringskenmerk: str | None = Field(
        default=None, max_length=40, json_schema_extra=ROUTERINGSKENMERK
    )
    overdrachtsoort: str = Field(
        max_length=40,
        json_schema_extra={"enum": ["overstapdossier", "overdrachtbinnenbrin", "swv-dossier"]},
    )
    zoeksleutel: str | None = Field(default=None, max_length=256, json_schema_extra=ZOEKSLEUTEL)
    koppelsleutel: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "for an swv-dossier (asked by an SWV endpoint), instead of the zoeksleutel: the "
            "koppelsleutel the SWV's notification carried"
        ),
        json_schema_extra=KOPPELSLEUTEL,
    )


class BronEndpoint(BaseModel):
    routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    url: str


class SessionGranted(BaseModel):
    sessie_id: str
    bron_endpoints: list[BronEndpoint]
    expires_at: dt.datetime


class SessionCheckBody(Body):
    """sessiecontroleRequest: the bron checks a dossier request against the session."""

    doel_brin: str = Field(max_length=16, json_schema_extra=BRIN)
    doel_routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)
    overdrachtsoort: str = Field(max_length=40)
    zoeksleutel: str | None = Field(
        default=None,
        max_length=256,
        description="as the dossier request named it; for an swv-dossier the koppelsleutel",
        json_schema_extra=ZOEKSLEUTEL,
    )
    koppelsleutel: str | None = Field(default=None, max_length=64, json_schema_extra=KOPPELSLEUTEL)


class SessionValid(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["SessieValide"]})
    doel_sector: str
    sessie_id: str


class SessionCloseBody(Body):
    """afmeldingRequest: the doel closes the session with its best result."""

    resultaat: str = Field(
        max_length=64,
        description=(
            "the best result over the bron endpoints asked. `OverdrachtGeslaagd` only after a "
            "complete dossier through the Traffic Center in this session (or, peer to peer, "
            "after the bron checked the session); a relay failure (`AanleverpuntOnbereikbaar`, "
            "`AanleverpuntTijdslimiet`, `OngeldigAntwoordAanleverpunt`, `DossierTeGroot`, a "
            "truncated stream) closes as `OverdrachtMislukt`"
        ),
        json_schema_extra={"enum": [code.value for code in closing_results_best_first()]},
    )
    routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)


class SessionClosed(BaseModel):
    sessie_id: str
    state: str
    resultaat: str
    routeringskenmerk: str
    closed_at: dt.datetime


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable and machine-readable."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None


class DossierRequestBody(Body):
    """documentRequest: ask the bron endpoint for the dossier, through the Traffic Center."""

    routeringskenmerk: str = Field(
        max_length=40,
        description="the bron endpoint to ask, one of the session's bron_endpoints",
        json_schema_extra=ROUTERINGSKENMERK,
    )
    zoeksleutel: str | None = Field(
        default=None,
        max_length=256,
        description="the session's zoeksleutel (every overdrachtsoort but swv-dossier)",
        json_schema_extra=ZOEKSLEUTEL,
    )
    koppelsleutel: str | None = Field(
        default=None,
        max_length=64,
        description="the session's koppelsleutel (swv-dossier only); give exactly one key",
        json_schema_extra=KOPPELSLEUTEL,
    )
    aanvraagdatum: dt.date | None = Field(
        default=None, description="only a dossier updated on or after this date"
    )


class NotificationBody(Body):
    """meldenNotificatieRequest: tell the doel endpoint that asked that its dossier is ready."""

    sessie_id: str = Field(max_length=64, description="the session in which the doel asked")
    doel_routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)


class NotificationDelivered(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["NotificatieOntvangen"]})
    transactie_id: str


class SwvNotificationBody(Body):
    """meldenNotificatieRequest to a samenwerkingsverband: no session comes before it."""

    doel_routeringskenmerk: str = Field(
        max_length=40,
        description="the SWV endpoint (kind SWV) of the samenwerkingsverband to tell",
        json_schema_extra=ROUTERINGSKENMERK,
    )


class SwvNotificationDelivered(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["NotificatieOntvangen"]})
    koppelsleutel: str = Field(
        description=(
            "issued by the Traffic Center for this school endpoint and this SWV endpoint; the "
            "SWV asks the dossier with it and gives its feedback with it"
        ),
        json_schema_extra=KOPPELSLEUTEL,
    )
    transactie_id: str


class FeedbackBody(Body):
    """meldenTerugkoppelingRequest: the SWV's feedback on a koppelsleutel, once."""

    koppelsleutel: str = Field(max_length=64, json_schema_extra=KOPPELSLEUTEL)
    terugkoppeling: str = Field(
        max_length=MAX_FEEDBACK_CHARS,
        description="the feedback for the school; relayed, never stored; no pupil numbers",
    )


class FeedbackDelivered(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["TerugkoppelingOntvangen"]})
    transactie_id: str


# --- what the Traffic Center sends to a LAS endpoint (the contract a vendor's LAS implements) ---


class LasDossierRequest(BaseModel):
    """POST {endpoint url}/dossier, sent by the Traffic Center to the bron's LAS."""

    sessie_id: str
    zoeksleutel: str | None = Field(
        default=None, description="absent for an swv-dossier", json_schema_extra=ZOEKSLEUTEL
    )
    koppelsleutel: str | None = Field(
        default=None,
        description="only for an swv-dossier: the one your notification to the SWV issued",
        json_schema_extra=KOPPELSLEUTEL,
    )
    overdrachtsoort: str
    aanvraagdatum: dt.date | None
    doel_brin: str = Field(json_schema_extra=BRIN)
    doel_routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    doel_sector: str = Field(description="apply inzage (PO→PO, PO→VO) or toestemming (VO→VO)")


class LasNotification(BaseModel):
    """POST {endpoint url}/notification, sent by the Traffic Center to the doel's LAS."""

    sessie_id: str | None = Field(
        description="the session the doel asked in; null for a notification to an SWV"
    )
    koppelsleutel: str | None = Field(
        default=None,
        description=(
            "only on a notification to an SWV endpoint: open an swv-dossier session with it "
            "(bron_brin, bron_routeringskenmerk) and give feedback with it"
        ),
        json_schema_extra=KOPPELSLEUTEL,
    )
    bron_brin: str = Field(json_schema_extra=BRIN)
    bron_routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)


class LasNotificationAnswer(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["NotificatieOntvangen"]})


class LasFeedback(BaseModel):
    """POST {endpoint url}/terugkoppeling, sent by the Traffic Center to the school's LAS."""

    koppelsleutel: str = Field(json_schema_extra=KOPPELSLEUTEL)
    swv_brin: str = Field(json_schema_extra=BRIN)
    swv_routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    terugkoppeling: str = Field(max_length=MAX_FEEDBACK_CHARS)


class LasFeedbackAnswer(BaseModel):
    resultaat: str = Field(json_schema_extra={"enum": ["TerugkoppelingOntvangen"]})


class AuditRecordOut(BaseModel):
    """One audit record: metadata of an exchange or administrative action, and its chain link."""

    id: int
    type: str
    transactie_id: str
    phase: str = Field(
        description=(
            "relays and notifications have two records: `started` before a byte was "
            "forwarded and `final` with the outcome; a started one whose node died is closed "
            "by another node with resultaat `Onvolledig`"
        ),
        json_schema_extra={"enum": ["started", "final"]},
    )
    recorded_at: dt.datetime
    resultaat: str
    http_status: int | None
    request_id: str | None
    caller_serial: str | None
    subject: str | None
    sessie_id: str | None
    doel_brin: str | None
    doel_routeringskenmerk: str | None
    bron_brin: str | None
    bron_routeringskenmerk: str | None
    upstream_status: int | None
    request_in: dt.datetime | None
    forwarded_at: dt.datetime | None
    response_in: dt.datetime | None
    response_out: dt.datetime | None
    size_bytes: int | None
    sha256: str | None
    key_id: str | None = Field(description="id of the key the record's hash is made with")
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    records: list[AuditRecordOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )
