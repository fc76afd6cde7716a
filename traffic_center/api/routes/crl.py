"""GET /v1/crl: the CA's newest published CRL, for LAS endpoints checking the TC's peers.

A node holds no CA key, so it never signs a CRL: it serves the one the certificate admin
published last (`ca revoke` and `ca crl` publish). Not an exchange: the CRL is public, and a
LAS fetching it often must not fill the audit log.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response

from traffic_center.api.identity import ServicesDep
from traffic_center.api.responses import SCREENED_ERRORS, problem_responses
from traffic_center.domain import errors as e

router = APIRouter(tags=["certificates"])

CRL_MEDIA_TYPE = "application/pkix-crl"  # RFC 5280 §4.2.1.13: DER


@router.get(
    "/v1/crl",
    summary="The Traffic Center CA's certificate revocation list (DER)",
    description=(
        "The newest CRL the certificate admin published, signed by the TC CA. Issued "
        "certificates name this URL as their CRL distribution point when the operator "
        "configured `TC_CRL_URL`. Refresh it before its nextUpdate; `Cache-Control` says how "
        "long this copy stays current."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The CRL, DER-encoded",
            "content": {
                CRL_MEDIA_TYPE: {
                    "schema": {"type": "string", "format": "binary"},
                    # DER is binary: the example stands for it, as openssl shows it.
                    "example": "(DER: openssl crl -inform DER -noout -text shows it)",
                }
            },
        },
        **problem_responses(*SCREENED_ERRORS, e.CrlNotPublished, e.StoreUnavailable),
    },
)
async def crl(svc: ServicesDep) -> Response:
    published = await svc.store.certificates.latest_crl()
    if published is None:
        raise e.CrlNotPublished()
    fresh_for = int((published.next_update - svc.clock()).total_seconds())
    return Response(
        published.der,
        media_type=CRL_MEDIA_TYPE,
        headers={
            "Cache-Control": f"public, max-age={max(0, min(fresh_for, 3600))}",
            "Last-Modified": _http_date(published.published_at),
        },
    )


def _http_date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
