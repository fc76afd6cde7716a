"""The one table from domain errors to HTTP statuses, and problem+json responses (RFC 9457)."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from traffic_center.domain import errors as e
from traffic_center.domain.las_contract import PROBLEM_MEDIA_TYPE
from traffic_center.observability.context import note_answer_code
from traffic_center.observability.expected_aborts import caused_by
from traffic_center.observability.logging import raised_at

log = structlog.get_logger("traffic_center.api")

# RFC 9457 §3.1.1: `type` may be a relative reference, resolved against the answer's URL; so
# every code's type resolves on the Traffic Center that answered it (GET /v1/problems/{code},
# api/routes/docs.py), whatever host name the vendor reaches it by.
PROBLEM_TYPE_BASE = "/v1/problems/"

# Every class of the error tree, with its status. A test proves no class is missing.
STATUS_BY_ERROR: dict[type[e.TrafficCenterError], int] = {
    e.TrafficCenterError: 500,
    e.InvalidInput: 422,
    e.InvalidBrin: 422,
    e.InvalidRouteringskenmerk: 422,
    e.InvalidZoeksleutel: 422,
    e.InvalidKoppelsleutel: 422,
    e.InvalidOverdrachtsoort: 422,
    e.InvalidSector: 422,
    e.InvalidEndpointKind: 422,
    e.InvalidResultCode: 422,
    e.InvalidUrl: 422,
    e.InvalidSessieId: 422,
    e.SearchKeyAmbiguous: 422,
    e.ClearPupilNumber: 422,
    e.IdempotencyKeyReused: 422,
    e.InvalidCursor: 422,
    e.InvalidPeriod: 422,
    e.SearchKeyWrongKind: 422,
    e.CallerRefused: 403,
    e.CertificateMissing: 401,
    e.CertificateUnknown: 403,
    e.CertificateRevoked: 403,
    e.CertificateExpired: 403,
    e.CertificateWrongPurpose: 403,
    e.CertificateInconsistent: 403,
    e.WrongRole: 403,
    e.EndpointNotRegistered: 403,
    e.EndpointInactive: 403,
    e.ForwardedCertificateRefused: 403,
    e.ForwardedCertificateMissing: 403,
    e.ForwardedCertificateMalformed: 400,
    e.NotFound: 404,
    e.SessionNotFound: 404,
    e.SchoolNotFound: 404,
    e.EndpointNotFound: 404,
    e.CertificateNotFound: 404,
    e.CrlNotPublished: 404,
    e.KoppelsleutelNotFound: 404,
    e.Conflict: 409,
    e.SchoolExists: 409,
    e.EndpointExists: 409,
    e.CertificateAlreadyRevoked: 409,
    e.FeedbackAlreadyGiven: 409,
    e.OsoRefusal: 409,
    e.VerstrekkerNietBekend: 404,
    e.GeenRelatieMetDoel: 403,
    # "Unknown X" is 404, as VerstrekkerNietBekend: a well-formed routeringskenmerk that
    # names no endpoint of that school is not a malformed request.
    e.OnbekendAanleverpunt: 404,
    e.AanleverpuntNietActief: 409,
    e.SessieAfwijkend: 409,
    e.SessieReedsAfgemeld: 409,
    e.SessieVerlopen: 410,
    e.ResultNotWitnessed: 409,
    e.NotificationNotRequested: 403,
    e.AanleverpuntVerkeerdeSoort: 403,
    e.BronAnswer: 409,
    e.DossierNietGevonden: 404,
    e.DossierNogNietGereed: 409,
    e.DossierVerouderd: 409,
    e.GeenInzage: 403,
    e.GeenToestemming: 403,
    e.RateLimited: 429,
    e.RequestTooLarge: 413,
    e.MalformedRequest: 400,
    e.StoreUnavailable: 503,
    e.AuditUnavailable: 503,
    e.AuditKeyMismatch: 503,
    e.InternalError: 500,
    e.RelayError: 502,
    e.RelayNotConfigured: 503,
    e.RelayBusy: 503,
    e.UpstreamFailure: 502,
    e.UpstreamUnreachable: 502,
    e.UpstreamTimeout: 504,
    e.UpstreamInvalidAnswer: 502,
    e.DossierTooLarge: 413,
    e.TransferAborted: 502,
    e.AdminError: 400,
    e.CaAlreadyExists: 409,
    e.CaMissing: 503,
    e.InvalidCsr: 400,
    e.InvalidValidity: 400,
    e.CaUnusable: 503,
    e.InvalidHostName: 400,
    e.InvalidSubjectName: 400,
    e.EndpointNotInRegistry: 400,
    e.OutputNotWritable: 400,
    e.SecretMissing: 400,
    e.WeakSecret: 400,
    e.NodeMisconfigured: 503,
}


def status_for(error: type[e.TrafficCenterError]) -> int:
    return STATUS_BY_ERROR[error]


def problem(
    status: int, *, code: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    note_answer_code(code)
    body = _body(status, code, title, detail)
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _body(status: int, code: str, title: str, detail: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail and detail != title:
        body["detail"] = detail
    return body


def problem_body(status: int, error: type[e.TrafficCenterError]) -> dict[str, Any]:
    """The body this error is answered with (its detail aside): the contract's examples."""
    return _body(status, error.code, error.title)


def problem_bytes(error: e.TrafficCenterError) -> bytes:
    """``problem_for``'s body as bytes, for an answer written below any app (the HTTP
    server's own refusals, server/limits.py)."""
    body = _body(status_for(type(error)), error.code, error.title, error.detail)
    return json.dumps(body, separators=(",", ":")).encode()


def problem_for(error: e.TrafficCenterError) -> JSONResponse:
    response = problem(
        status_for(type(error)), code=error.code, title=error.title, detail=error.detail
    )
    if isinstance(error, e.RateLimited):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


async def handle_domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.TrafficCenterError)
    return problem_for(exc)


# A body that cannot be read or decoded (not UTF-8, JSON nested thousands deep, an integer
# past Python's digit limit) is invalid input like any other: one code, one status (422), with
# where it went wrong. FastAPI raises a bare 400 for it; the plain routes raise this.
UNREADABLE_BODY_TYPE = "body_unreadable"
UNREADABLE_BODY_MESSAGE = (
    "the body could not be read: not UTF-8, or JSON nested too deep or with too long a number"
)


def unreadable_body() -> RequestValidationError:
    return RequestValidationError(
        [{"type": UNREADABLE_BODY_TYPE, "loc": ("body",), "msg": UNREADABLE_BODY_MESSAGE}]
    )


async def handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Echo where and what, never the input itself: it may hold a pupil's data.
    errors = [
        {"loc": _location_without_input(item), "msg": _message_without_input(item)}
        for item in exc.errors()
    ]
    return problem(
        422,
        code=e.InvalidInput.code,
        title=e.InvalidInput.title,
        detail="the request body or parameters do not match the schema",
        errors=errors,
    )


# Pydantic messages that are fixed texts or quote only the schema (a pattern, a length, the
# allowed values). Any other message, e.g. a validator's "Value error, …", may quote the input.
_SCHEMA_ONLY_MESSAGES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_type",
        "int_type",
        "int_parsing",
        "bool_type",
        "bool_parsing",
        "dict_type",
        "model_type",
        "list_type",
        "date_type",
        "date_parsing",
        "date_from_datetime_parsing",
        "datetime_type",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "literal_error",
        "enum",
        "json_invalid",
        "json_type",
        "too_short",
        "too_long",
        UNREADABLE_BODY_TYPE,
    }
)


def _location_without_input(item: Any) -> list[str]:
    """Where: the schema's names; an unknown field's name is the caller's text, so not it."""
    location = [str(p) for p in item.get("loc", ())]
    if item.get("type") == "extra_forbidden" and location:
        location[-1] = "(unknown field)"
    return location


def _message_without_input(item: Any) -> str:
    """Pydantic's message when it cannot quote the caller's input, else only its kind."""
    kind = str(item.get("type", ""))
    message = str(item.get("msg", ""))
    value = item.get("input")
    quoted = isinstance(value, str) and len(value) >= 3 and value in message
    if kind in _SCHEMA_ONLY_MESSAGES and not quoted:
        return message
    return f"invalid value ({kind or 'error'})"


_HTTP_CODES = {
    # The error tree's own code and title: one problem type, one title (RFC 9457 §3.1.3).
    404: (e.NotFound.code, e.NotFound.title),
    405: ("MethodeNietToegestaan", "Method not allowed on this resource"),
}
_OTHER_HTTP = ("HttpFout", "HTTP error")


@dataclass(frozen=True, slots=True)
class ProblemPage:
    """What GET /v1/problems/{code} says about one code."""

    code: str
    status: int
    title: str
    explanation: str


def problem_pages() -> dict[str, ProblemPage]:
    """Every code the Traffic Center can answer, from the error table and the HTTP codes."""
    pages = {
        code: ProblemPage(code, status, title, "")
        for status, (code, title) in {**_HTTP_CODES, 500: _OTHER_HTTP}.items()
    }
    for cls, status in STATUS_BY_ERROR.items():
        explanation = inspect.getdoc(cls) or ""
        if explanation == inspect.getdoc(cls.__mro__[1]):
            explanation = ""  # inherited, not about this code
        pages[cls.code] = ProblemPage(cls.code, status, cls.title, explanation)
    return pages


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's only 400 here: a body it could not read
        return await handle_validation_error(request, unreadable_body())
    code, title = _HTTP_CODES.get(exc.status_code, _OTHER_HTTP)
    response = problem(exc.status_code, code=code, title=title)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def handle_unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    """Outside an exchange (inside one, the runner turns it into InternalError and records it).

    Never a stack trace to the client; the log names the exception's type and where it was
    raised, not its message (which could quote a payload).
    """
    if not caused_by(exc, (e.TransferAborted,)):
        # A relay cut after its headers (the bron broke off, the doel stopped reading) comes
        # here too, wrapped: it is no bug, its exchange's line and record say what happened,
        # and the doel, its answer begun, gets no 500 but a dropped connection.
        log.error("unexpected_error", error=type(exc).__name__, where=raised_at(exc))
    return problem(500, code=e.InternalError.code, title=e.InternalError.title)
