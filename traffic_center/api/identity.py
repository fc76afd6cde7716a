"""Peer identity: the client certificate the TLS layer verified, as the exchanges take it.

Checking it (inventory, revocation, role, registration) is the exchange runner's first step,
so a refused caller is recorded like any other exchange.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, Request
from starlette.types import Scope

from traffic_center.api.services import Services


def services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def peer_certificate(request: Request) -> str | None:
    return peer_certificate_of(request.scope)


def peer_certificate_of(scope: Scope) -> str | None:
    """The leaf certificate the TLS layer verified (ASGI TLS extension, PEM)."""
    extensions: dict[str, Any] = scope.get("extensions") or {}
    chain = (extensions.get("tls") or {}).get("client_cert_chain") or []
    return str(chain[0]) if chain else None


ServicesDep = Annotated[Services, Depends(services)]
PeerDep = Annotated[str | None, Depends(peer_certificate)]
