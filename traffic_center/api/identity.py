"""Peer identity: the client certificate from the TLS connection, checked on every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request

from traffic_center.api.audited import record_refused_caller
from traffic_center.api.services import Services
from traffic_center.broker.caller import Caller, CertificateIdentity
from traffic_center.domain.errors import CallerRefused

T = TypeVar("T")


def services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def peer_certificate_pem(request: Request) -> str | None:
    """The leaf certificate the TLS layer verified (ASGI TLS extension, PEM)."""
    extensions: dict[str, Any] = request.scope.get("extensions") or {}
    chain = (extensions.get("tls") or {}).get("client_cert_chain") or []
    return str(chain[0]) if chain else None


async def current_identity(request: Request) -> CertificateIdentity:
    return await _authenticated(request, lambda svc, pem: svc.authenticator.identify(pem))


async def current_caller(request: Request) -> Caller:
    """Rule 1: a certificate bound to an active, registered endpoint."""
    return await _authenticated(request, lambda svc, pem: svc.authenticator.caller(pem))


async def _authenticated(
    request: Request, check: Callable[[Services, str | None], Awaitable[T]]
) -> T:
    svc = services(request)
    pem = peer_certificate_pem(request)
    try:
        return await check(svc, pem)
    except CallerRefused as refused:
        svc.metrics.refused_callers.labels(reason=refused.code).inc()
        await record_refused_caller(svc, refused, pem)
        raise


ServicesDep = Annotated[Services, Depends(services)]
IdentityDep = Annotated[CertificateIdentity, Depends(current_identity)]
CallerDep = Annotated[Caller, Depends(current_caller)]
