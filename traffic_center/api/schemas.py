"""Request and response bodies of the vendor API (JSON fields use the OSO nouns)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

from traffic_center.domain.identifiers import (
    KOPPELSLEUTEL_PATTERN,
    ZOEKSLEUTEL_PATTERN,
    EndpointKind,
    Overdrachtsoort,
    Sector,
)
from traffic_center.domain.models import SessionState
from traffic_center.domain.results import closing_results_best_first

# The published contract is exactly as strict as the server: every pattern, format and enum
# here is the one the domain's parse_* function enforces (domain/identifiers.py). The domain
# does the validating, so a refusal carries its stable code (OngeldigeBrin, …), not a generic
# schema error.
BRIN: JsonDict = {"pattern": "^[0-9]{2}[A-Z]{2}$", "examples": ["12AB"]}
ROUTERINGSKENMERK: JsonDict = {"pattern": "^[0-9]{20}$", "examples": ["00000007000012000001"]}
# Zoeksleutel v1 (docs/zoeksleutel.md): the example is the test vector for PGN 662460613.
ZOEKSLEUTEL: JsonDict = {
    "pattern": ZOEKSLEUTEL_PATTERN,
    "examples": ["rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc"],
}
# identifiers.parse_sessie_id: a UUID in its 8-4-4-4-12 form, either case.
SESSIE_ID: JsonDict = {
    "format": "uuid",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "examples": ["0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10"],
}
# RFC 3339 §5.6: a date-time always carries its zone (Z or ±hh:mm); the server refuses one
# without (OngeldigePeriode) instead of guessing UTC or Amsterdam, and refuses a bare date.
DATE_TIME: JsonDict = {"format": "date-time", "examples": ["2026-01-31T08:00:00Z"]}
OVERDRACHTSOORT: JsonDict = {"enum": [s.value for s in Overdrachtsoort]}
SECTOR: JsonDict = {"enum": [s.value for s in Sector]}
ENDPOINT_KIND: JsonDict = {"enum": [k.value for k in EndpointKind]}
CLOSING_RESULTS: JsonDict = {"enum": [code.value for code in closing_results_best_first()]}

# No length bound here: a sessie_id too long is as malformed as any other, and the domain's
# parse answers every malformed one alike (422 OngeldigeSessieId); a bound here answered the
# long ones (braces, urn:uuid:) with OngeldigeInvoer instead.
SessieIdPath = Annotated[
    str, Path(description="the session's sessie_id", json_schema_extra=SESSIE_ID)
]


# An aanvraagdatum is a calendar day (YYYY-MM-DD, the bron school's day in Europe/Amsterdam):
# strict, so a date-time, a number or another spelling is refused rather than converted.
def _calendar_day(value: object) -> object:
    """YYYY-MM-DD only (RFC 3339 full-date, JSON Schema's `format: date`), refused otherwise."""
    if isinstance(value, str) and _FULL_DATE.fullmatch(value):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise ValueError("not a calendar day YYYY-MM-DD")


_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CalendarDay = Annotated[dt.date, BeforeValidator(_calendar_day)]


def examples(*values: dict[str, Any]) -> ConfigDict:
    """Whole-body examples, published in the schema; a test validates each against it."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


KOPPELSLEUTEL: JsonDict = {
    "pattern": KOPPELSLEUTEL_PATTERN,
    "examples": ["3F2504E0-4F89-41D3-9A0C-0305E82C3301"],
}
# The SWV's feedback is relayed to the school, never stored; short, like a message.
MAX_FEEDBACK_CHARS = 2000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhoAmI(BaseModel):
    model_config = examples(
        {
            "routeringskenmerk": "00000007000012000001",
            "name": "School 12AB",
            "serial": "3A9F01C2",
            "not_after": "2027-01-31T08:00:00Z",
            "brin": "12AB",
            "endpoint_registered": True,
            "endpoint_active": True,
        }
    )

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
    kind: str = Field(json_schema_extra=ENDPOINT_KIND)


class EndpointList(BaseModel):
    model_config = examples(
        {
            "endpoints": [
                {
                    "routeringskenmerk": "00000007000012000001",
                    "brin": "12AB",
                    "url": "https://las.example/oso",
                    "kind": "OV",
                }
            ]
        }
    )

    endpoints: list[EndpointOut]


def _exactly_one_of(
    first: str,
    second: str,
    *whole: dict[str, Any],
    narrow: dict[str, dict[str, JsonDict]] | None = None,
) -> Any:
    """Publish a body as a `oneOf` of two whole objects: `first` a string and `second` absent
    or null, or the other way round (the server: exactly one of the two is not None).

    Each branch carries every property, so a generated client gets two complete models
    (openapi-python-client drops the sibling `properties` of a `oneOf`), and the rule stays
    exactly as strict as the server. ``narrow`` tightens a property within one branch
    (given key -> property -> schema keywords), for a rule that ties another field to the key.
    """

    def rewrite(schema: JsonDict) -> None:
        properties: dict[str, Any] = dict(schema.pop("properties"))  # type: ignore[arg-type]
        required: list[str] = list(schema.pop("required", []))  # type: ignore[arg-type]
        closed = schema.pop("additionalProperties", False)
        schema.pop("type", None)
        branches: list[JsonValue] = []
        for given, absent in ((first, second), (second, first)):
            prop = dict(properties[given])
            (string,) = (v for v in prop.pop("anyOf") if v != {"type": "null"})
            prop.pop("default", None)
            branch: JsonDict = {
                **{k: v for k, v in properties.items() if k != absent},
                given: {**string, **prop},
                **{
                    name: {**properties[name], **keywords}
                    for name, keywords in (narrow or {}).get(given, {}).items()
                },
                absent: {"type": "null", "description": f"absent (or null): `{given}` is given"},
            }
            branches.append(
                {
                    "title": f"{schema['title']}By{given.capitalize()}",
                    "type": "object",
                    "properties": branch,
                    "required": [*required, given],
                    "additionalProperties": closed,
                }
            )
        schema["oneOf"] = branches
        schema["examples"] = list(whole)

    return rewrite


class SessionCreate(Body):
    """overdrachtRequest: ask a session for one dossier from a bron school.

    Exactly one of `zoeksleutel` and `koppelsleutel` (the `oneOf`: a whole body of each
    kind); else 422 `ZoeksleutelOfKoppelsleutel`.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_exactly_one_of(
            "zoeksleutel",
            "koppelsleutel",
            {
                "bron_brin": "12AB",
                "overdrachtsoort": "overstapdossier",
                "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
            },
            {
                "bron_brin": "12AB",
                "bron_routeringskenmerk": "00000007000012000001",
                "overdrachtsoort": "swv-dossier",
                "koppelsleutel": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
            },
            # domain/rules.check_search_key_kind: the koppelsleutel for an swv-dossier only
            narrow={
                "zoeksleutel": {
                    "overdrachtsoort": {
                        "enum": [
                            s.value for s in Overdrachtsoort if s is not Overdrachtsoort.SWV_DOSSIER
                        ]
                    }
                },
                "koppelsleutel": {"overdrachtsoort": {"enum": [Overdrachtsoort.SWV_DOSSIER.value]}},
            },
        ),
    )
    bron_brin: str = Field(max_length=16, json_schema_extra=BRIN)
    bron_routeringskenmerk: str | None = Field(
        default=None, max_length=40, json_schema_extra=ROUTERINGSKENMERK
    )
    overdrachtsoort: str = Field(max_length=40, json_schema_extra=OVERDRACHTSOORT)
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
    model_config = examples(
        {
            "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
            "bron_endpoints": [
                {"routeringskenmerk": "00000007000012000001", "url": "https://las.example/oso"}
            ],
            "expires_at": "2026-01-31T09:00:00Z",
        }
    )

    sessie_id: str = Field(json_schema_extra=SESSIE_ID)
    bron_endpoints: list[BronEndpoint]
    expires_at: dt.datetime


class SessionCheckBody(Body):
    """sessiecontroleRequest: the bron checks a dossier request against the session."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "doel_brin": "34CD",
                    "doel_routeringskenmerk": "00000007000034000001",
                    "overdrachtsoort": "overstapdossier",
                    "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
                }
            ]
        },
    )

    doel_brin: str = Field(max_length=16, json_schema_extra=BRIN)
    doel_routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)
    overdrachtsoort: str = Field(max_length=40, json_schema_extra=OVERDRACHTSOORT)
    zoeksleutel: str | None = Field(
        default=None,
        max_length=256,
        description="as the dossier request named it; for an swv-dossier the koppelsleutel",
        json_schema_extra=ZOEKSLEUTEL,
    )
    koppelsleutel: str | None = Field(default=None, max_length=64, json_schema_extra=KOPPELSLEUTEL)


class SessionValid(BaseModel):
    model_config = examples(
        {
            "resultaat": "SessieValide",
            "doel_sector": "VO",
            "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
        }
    )

    resultaat: str = Field(json_schema_extra={"enum": ["SessieValide"]})
    doel_sector: str = Field(
        description="apply inzage (PO→PO, PO→VO) or toestemming (VO→VO)", json_schema_extra=SECTOR
    )
    sessie_id: str = Field(json_schema_extra=SESSIE_ID)


class SessionCloseBody(Body):
    """afmeldingRequest: the doel closes the session with its best result."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": "00000007000012000001"}
            ]
        },
    )

    resultaat: str = Field(
        max_length=64,
        description=(
            "the best result over the bron endpoints asked. `OverdrachtGeslaagd` only after a "
            "complete dossier through the Traffic Center in this session (or, peer to peer, "
            "after the bron checked the session); a relay failure (`AanleverpuntOnbereikbaar`, "
            "`AanleverpuntTijdslimiet`, `OngeldigAntwoordAanleverpunt`, `DossierTeGroot`, a "
            "truncated stream) closes as `OverdrachtMislukt`"
        ),
        json_schema_extra=CLOSING_RESULTS,
    )
    routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)


class SessionClosed(BaseModel):
    model_config = examples(
        {
            "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
            "state": "CLOSED",
            "resultaat": "OverdrachtGeslaagd",
            "routeringskenmerk": "00000007000012000001",
            "closed_at": "2026-01-31T08:05:00Z",
        }
    )

    sessie_id: str = Field(json_schema_extra=SESSIE_ID)
    state: str = Field(json_schema_extra={"enum": [s.value for s in SessionState]})
    resultaat: str = Field(json_schema_extra=CLOSING_RESULTS)
    routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    closed_at: dt.datetime


class ValidationIssue(BaseModel):
    """One reason a request did not match the schema (never the value itself)."""

    loc: list[str] = Field(description="where: `body`, `query`, `header` or `path`, then names")
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, the one error shape of every answer (and of a LAS's answers).

    `code` is stable and machine-readable, and an open set: each operation documents the codes
    it answers today (its responses' `x-codes`), but a client must accept a code it does not
    know, reading `status` for what to do. `type` is `/v1/problems/{code}`, a page on the
    Traffic Center that explains the code. Any path may also answer 404 `NietGevonden` (no
    such resource) or 405 `MethodeNietToegestaan` (with `Allow`).
    """

    model_config = examples(
        {
            "type": "/v1/problems/SessieVerlopen",
            "title": "The session has expired",
            "status": 410,
            "code": "SessieVerlopen",
        },
        {
            "type": "/v1/problems/OngeldigeInvoer",
            "title": "The request is not valid",
            "status": 422,
            "code": "OngeldigeInvoer",
            "detail": "the request body or parameters do not match the schema",
            "errors": [{"loc": ["body", "routeringskenmerk"], "msg": "Field required"}],
        },
    )

    type: str = Field(
        description="`/v1/problems/{code}`, relative to the Traffic Center's URL (RFC 9457 §3.1.1)",
        json_schema_extra={"format": "uri-reference"},
    )
    title: str
    status: int = Field(ge=100, le=599)
    code: str = Field(description="stable, machine-readable; an open set (see above)")
    detail: str | None = None
    errors: list[ValidationIssue] | None = Field(
        default=None, description="with `OngeldigeInvoer` only: what did not match the schema"
    )


class DossierRequestBody(Body):
    """documentRequest: ask the bron endpoint for the dossier, through the Traffic Center.

    Exactly one of `zoeksleutel` and `koppelsleutel` (the `oneOf`: a whole body of each
    kind); else 422 `ZoeksleutelOfKoppelsleutel`.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_exactly_one_of(
            "zoeksleutel",
            "koppelsleutel",
            {
                "routeringskenmerk": "00000007000012000001",
                "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
                "aanvraagdatum": "2026-01-01",
            },
            {
                "routeringskenmerk": "00000007000012000001",
                "koppelsleutel": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
            },
        ),
    )

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
    aanvraagdatum: CalendarDay | None = Field(
        default=None,
        description=(
            "only a dossier updated on or after this calendar day (YYYY-MM-DD, the bron "
            "school's day, Europe/Amsterdam); a date-time or any other spelling is refused"
        ),
    )


class NotificationBody(Body):
    """meldenNotificatieRequest: tell the doel endpoint that asked that its dossier is ready."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
                    "doel_routeringskenmerk": "00000007000034000001",
                }
            ]
        },
    )

    sessie_id: str = Field(
        max_length=64,
        description="the session in which the doel asked",
        json_schema_extra=SESSIE_ID,
    )
    doel_routeringskenmerk: str = Field(max_length=40, json_schema_extra=ROUTERINGSKENMERK)


class NotificationDelivered(BaseModel):
    model_config = examples(
        {
            "resultaat": "NotificatieOntvangen",
            "transactie_id": "5d0c8a6e-6a0e-4f7b-9a51-0d8e2b8f1c3a",
        }
    )

    resultaat: str = Field(json_schema_extra={"enum": ["NotificatieOntvangen"]})
    transactie_id: str = Field(json_schema_extra={"format": "uuid"})


class SwvNotificationBody(Body):
    """meldenNotificatieRequest to a samenwerkingsverband: no session comes before it."""

    model_config = examples({"doel_routeringskenmerk": "00000007000099000001"})

    doel_routeringskenmerk: str = Field(
        max_length=40,
        description="the SWV endpoint (kind SWV) of the samenwerkingsverband to tell",
        json_schema_extra=ROUTERINGSKENMERK,
    )


class SwvNotificationDelivered(BaseModel):
    model_config = examples(
        {
            "resultaat": "NotificatieOntvangen",
            "koppelsleutel": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
            "transactie_id": "7c1f8a52-3e0b-4c1d-9f2a-6b5d4e3c2a10",
        }
    )

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

    model_config = examples(
        {
            "koppelsleutel": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
            "terugkoppeling": "Aanvraag ontvangen; het SWV neemt contact op.",
        }
    )

    koppelsleutel: str = Field(max_length=64, json_schema_extra=KOPPELSLEUTEL)
    terugkoppeling: str = Field(
        max_length=MAX_FEEDBACK_CHARS,
        description="the feedback for the school; relayed, never stored; no pupil numbers",
    )


class FeedbackDelivered(BaseModel):
    model_config = examples(
        {
            "resultaat": "TerugkoppelingOntvangen",
            "transactie_id": "7c1f8a52-3e0b-4c1d-9f2a-6b5d4e3c2a10",
        }
    )

    resultaat: str = Field(json_schema_extra={"enum": ["TerugkoppelingOntvangen"]})
    transactie_id: str


# --- what the Traffic Center sends to a LAS endpoint (the contract a vendor's LAS implements) ---


class LasDossierRequest(BaseModel):
    """POST {endpoint url}/dossier, sent by the Traffic Center to the bron's LAS."""

    model_config = examples(
        {
            "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
            "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
            "overdrachtsoort": "overstapdossier",
            "aanvraagdatum": None,
            "doel_brin": "34CD",
            "doel_routeringskenmerk": "00000007000034000001",
            "doel_sector": "VO",
        }
    )

    sessie_id: str = Field(json_schema_extra=SESSIE_ID)
    zoeksleutel: str | None = Field(
        default=None, description="absent for an swv-dossier", json_schema_extra=ZOEKSLEUTEL
    )
    koppelsleutel: str | None = Field(
        default=None,
        description="only for an swv-dossier: the one your notification to the SWV issued",
        json_schema_extra=KOPPELSLEUTEL,
    )
    overdrachtsoort: str = Field(json_schema_extra=OVERDRACHTSOORT)
    aanvraagdatum: dt.date | None
    doel_brin: str = Field(json_schema_extra=BRIN)
    doel_routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    doel_sector: str = Field(
        description="apply inzage (PO→PO, PO→VO) or toestemming (VO→VO)", json_schema_extra=SECTOR
    )


class LasNotification(BaseModel):
    """POST {endpoint url}/notification, sent by the Traffic Center to the doel's LAS."""

    model_config = examples(
        {
            "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
            "bron_brin": "12AB",
            "bron_routeringskenmerk": "00000007000012000001",
        }
    )

    sessie_id: str | None = Field(
        description="the session the doel asked in; null for a notification to an SWV",
        json_schema_extra=SESSIE_ID,
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
    model_config = examples({"resultaat": "NotificatieOntvangen"})

    resultaat: str = Field(json_schema_extra={"enum": ["NotificatieOntvangen"]})


class LasFeedback(BaseModel):
    """POST {endpoint url}/terugkoppeling, sent by the Traffic Center to the school's LAS."""

    model_config = examples(
        {
            "koppelsleutel": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
            "swv_brin": "99SV",
            "swv_routeringskenmerk": "00000007000099000001",
            "terugkoppeling": "Aanvraag ontvangen.",
        }
    )

    koppelsleutel: str = Field(json_schema_extra=KOPPELSLEUTEL)
    swv_brin: str = Field(json_schema_extra=BRIN)
    swv_routeringskenmerk: str = Field(json_schema_extra=ROUTERINGSKENMERK)
    terugkoppeling: str = Field(max_length=MAX_FEEDBACK_CHARS)


class LasFeedbackAnswer(BaseModel):
    model_config = examples({"resultaat": "TerugkoppelingOntvangen"})

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
    model_config = examples(
        {
            "records": [
                {
                    "id": 7,
                    "type": "afmeldingRequest",
                    "transactie_id": "5d0c8a6e-6a0e-4f7b-9a51-0d8e2b8f1c3a",
                    "phase": "final",
                    "recorded_at": "2026-01-31T08:05:00Z",
                    "resultaat": "OverdrachtGeslaagd",
                    "http_status": 200,
                    "request_id": "9a1f3a52-1c0e-4a51-8f0e-2f7a0b1c2d3e",
                    "caller_serial": "3A9F01C2",
                    "subject": "00000007000034000001",
                    "sessie_id": "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10",
                    "doel_brin": "34CD",
                    "doel_routeringskenmerk": "00000007000034000001",
                    "bron_brin": "12AB",
                    "bron_routeringskenmerk": "00000007000012000001",
                    "upstream_status": None,
                    "request_in": "2026-01-31T08:05:00Z",
                    "forwarded_at": None,
                    "response_in": None,
                    "response_out": "2026-01-31T08:05:00Z",
                    "size_bytes": None,
                    "sha256": None,
                    "key_id": "k1",
                    "prev_hash": "0" * 64,
                    "hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                }
            ],
            "next_cursor": None,
        }
    )

    records: list[AuditRecordOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )
