"""OpenAPI problem responses per route, derived from the error table so docs cannot drift."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from traffic_center.api.problems import problem_body, status_for
from traffic_center.domain import errors as e
from traffic_center.domain.las_contract import PROBLEM_MEDIA_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# RFC 9110 §10.2.3: delay-seconds; the server sends whole seconds.
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["30"]},
    }
}

# The request guard screens the certificate of every request before any route is chosen
# (api/guard.py): the documentation and the CRL, which need no registered endpoint, too.
SCREENED_ERRORS: tuple[type[e.TrafficCenterError], ...] = (
    e.CertificateUnknown,
    e.CertificateRevoked,
    e.CertificateExpired,
    e.CertificateWrongPurpose,
    e.ForwardedCertificateRefused,
    e.ForwardedCertificateMissing,
    e.ForwardedCertificateMalformed,
    e.CertificateInconsistent,
)
# Every authenticated route can refuse its caller this way.
CALLER_ERRORS: tuple[type[e.TrafficCenterError], ...] = (
    *SCREENED_ERRORS,
    e.CertificateMissing,
    e.StoreUnavailable,
    e.RateLimited,  # rule 9: every route has a per-endpoint budget
)
REGISTERED_CALLER_ERRORS = (*CALLER_ERRORS, e.EndpointNotRegistered, e.EndpointInactive)
# Every exchange is refused when it cannot be recorded (fail closed), and any can fail
# unexpectedly (recorded, 500).
EXCHANGE_ERRORS = (
    *REGISTERED_CALLER_ERRORS,
    e.AuditUnavailable,
    e.AuditKeyMismatch,
    e.InternalError,
)


def problem_responses(*classes: type[e.TrafficCenterError]) -> dict[int | str, dict[str, Any]]:
    """One response per status, each the shared Problem; the codes are listed, not enumerated.

    `code` stays an open string in the schema, so a client generated from the contract accepts
    a code added later; the codes this operation answers today are in the description and in
    `x-codes`, with an example for each.
    """
    by_status: dict[int, dict[str, type[e.TrafficCenterError]]] = defaultdict(dict)
    every: tuple[type[e.TrafficCenterError], ...] = (*classes, e.InvalidInput)
    for cls in every:  # every route validates its input schema
        by_status[status_for(cls)][cls.code] = cls
    return {
        status: _problem_response(status, [found[code] for code in sorted(found)])
        for status, found in sorted(by_status.items())
    }


def _problem_response(status: int, classes: list[type[e.TrafficCenterError]]) -> dict[str, Any]:
    codes = [cls.code for cls in classes]
    response: dict[str, Any] = {
        "description": "Problem; `code` is one of: " + ", ".join(codes),
        "x-codes": codes,
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": PROBLEM_REF,
                "examples": {
                    cls.code: {"summary": cls.title, "value": problem_body(status, cls)}
                    for cls in classes
                },
            }
        },
    }
    if status == 429:
        response["headers"] = RETRY_AFTER_HEADER
    return response
