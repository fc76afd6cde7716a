"""What the TC sends a reference LAS and the problems it gets back.

Parsing the relayed documentRequest, notificatieRequest and terugkoppeling bodies, checking that the caller is
the TC's relay, and building problem+json answers that carry an OSO result code.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from starlette.requests import Request
from starlette.responses import JSONResponse

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import (
    Overdrachtsoort,
    Sector,
    parse_brin,
    parse_koppelsleutel,
    parse_overdrachtsoort,
    parse_routeringskenmerk,
    parse_sector,
    parse_sessie_id,
    parse_zoeksleutel,
)
from traffic_center.domain.las_contract import (
    PROBLEM_MEDIA_TYPE,
    SESSION_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.domain.models import CertificateRole
from traffic_center.las.scenarios import Refusal
from traffic_center.pki.inspect import role_of

PROBLEM_TYPE_BASE = "urn:oso:resultaat:"
INVALID_INPUT = "OngeldigeInvoer"
CALLER_REFUSED = "CertificaatGeweigerd"
# The TC's messages to a LAS are a few hundred bytes; anything far larger is not one of them.
MAX_REQUEST_BYTES = 64 * 1024

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class DossierRequest:
    """A documentRequest as the TC relays it: a zoeksleutel, or for an swv-dossier the
    koppelsleutel (then ``zoeksleutel`` is None until the bron looks the pupil up)."""

    sessie_id: str
    zoeksleutel: str | None
    overdrachtsoort: Overdrachtsoort
    aanvraagdatum: dt.date | None
    doel_brin: str
    doel_routeringskenmerk: str
    doel_sector: Sector
    transactie_id: str | None
    koppelsleutel: str | None = None


def parse_dossier_request(body: object, headers: Mapping[str, str]) -> DossierRequest:
    fields = _json_object(body)
    request = DossierRequest(
        sessie_id=parse_sessie_id(_text(fields, "sessie_id")),
        zoeksleutel=_optional(fields, "zoeksleutel", parse_zoeksleutel),
        overdrachtsoort=parse_overdrachtsoort(_text(fields, "overdrachtsoort")),
        aanvraagdatum=_date(fields.get("aanvraagdatum")),
        doel_brin=parse_brin(_text(fields, "doel_brin")),
        doel_routeringskenmerk=parse_routeringskenmerk(_text(fields, "doel_routeringskenmerk")),
        doel_sector=parse_sector(_text(fields, "doel_sector")),
        transactie_id=headers.get(TRANSACTION_HEADER),
        koppelsleutel=_optional(fields, "koppelsleutel", parse_koppelsleutel),
    )
    if (request.zoeksleutel is None) == (request.koppelsleutel is None):
        raise InvalidInput("give exactly one of zoeksleutel and koppelsleutel")
    _check_session_header(request.sessie_id, headers)
    return request


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    """A notification: for a session the doel asked in, or (on an SWV endpoint, the SWV
    flow) with the koppelsleutel a school's notification was issued and no session."""

    sessie_id: str | None
    bron_brin: str
    bron_routeringskenmerk: str
    koppelsleutel: str | None = None


def parse_notification_request(body: object, headers: Mapping[str, str]) -> NotificationRequest:
    fields = _json_object(body)
    request = NotificationRequest(
        sessie_id=_optional(fields, "sessie_id", parse_sessie_id),
        bron_brin=parse_brin(_text(fields, "bron_brin")),
        bron_routeringskenmerk=parse_routeringskenmerk(_text(fields, "bron_routeringskenmerk")),
        koppelsleutel=_optional(fields, "koppelsleutel", parse_koppelsleutel),
    )
    if (request.sessie_id is None) == (request.koppelsleutel is None):
        raise InvalidInput("a notification names a sessie_id, or (to an SWV) a koppelsleutel")
    if request.sessie_id is not None:
        _check_session_header(request.sessie_id, headers)
    return request


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """The SWV's feedback (terugkoppeling) on a koppelsleutel, as the TC relays it."""

    koppelsleutel: str
    swv_brin: str
    swv_routeringskenmerk: str
    terugkoppeling: str


def parse_feedback_request(body: object) -> FeedbackRequest:
    fields = _json_object(body)
    return FeedbackRequest(
        koppelsleutel=parse_koppelsleutel(_text(fields, "koppelsleutel")),
        swv_brin=parse_brin(_text(fields, "swv_brin")),
        swv_routeringskenmerk=parse_routeringskenmerk(_text(fields, "swv_routeringskenmerk")),
        terugkoppeling=_text(fields, "terugkoppeling"),
    )


def _optional(fields: Mapping[str, Any], name: str, parse: Callable[[str], str]) -> str | None:
    return None if fields.get(name) is None else parse(_text(fields, name))


def _json_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} is missing or not a string")
    return value


def _date(value: object) -> dt.date | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise InvalidInput("aanvraagdatum must be YYYY-MM-DD or null")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"aanvraagdatum {value!r} is not a date") from None


def _check_session_header(sessie_id: str, headers: Mapping[str, str]) -> None:
    # The TC names the session twice; a LAS that gets two different ones must not guess.
    header = headers.get(SESSION_HEADER)
    if header is not None and header.lower() != sessie_id:
        raise InvalidInput(f"{SESSION_HEADER} does not match the body's sessie_id")


async def read_json_body(request: Request) -> object:
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_REQUEST_BYTES:
            raise InvalidInput(f"the body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not JSON") from None


def is_relay_caller(request: Request) -> bool:
    """Whether the TLS peer is the TC's relay: the only party a LAS endpoint answers."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return False
    try:
        certificate = x509.load_pem_x509_certificate(chain[0].encode())
    except ValueError:
        return False
    return role_of(certificate) is CertificateRole.RELAY


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem whose ``code`` is the OSO result code."""
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
    }
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def refusal_problem(refusal: Refusal, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return problem(refusal.status, refusal.code, refusal.title, headers=headers)
