"""OpenAPI problem responses per route, derived from the error table so docs cannot drift."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from traffic_center.api.problems import PROBLEM_MEDIA_TYPE, status_for
from traffic_center.domain import errors as e

# Every authenticated route can refuse its caller this way.
CALLER_ERRORS: tuple[type[e.TrafficCenterError], ...] = (
    e.CertificateMissing,
    e.CertificateUnknown,
    e.CertificateRevoked,
    e.CertificateExpired,
    e.CertificateWrongPurpose,
    e.CertificateInconsistent,
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
    codes_by_status: dict[int, set[str]] = defaultdict(set)
    for cls in classes:
        codes_by_status[status_for(cls)].add(cls.code)
    codes_by_status[422].add(e.InvalidInput.code)  # every route validates its input schema
    responses: dict[int | str, dict[str, Any]] = {}
    for status, codes in sorted(codes_by_status.items()):
        ordered = sorted(codes)
        responses[status] = {
            "description": "Problem; `code` is one of: " + ", ".join(ordered),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Problem"},
                            {"properties": {"code": {"enum": ordered}}},
                        ]
                    }
                }
            },
        }
    return responses
