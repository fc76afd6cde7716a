"""Peer identity: the client certificate the TLS layer verified, and the RFC 9440
``Client-Cert`` header a TLS-terminating proxy forwarded, as the exchanges take them.

Deciding what to believe (a header only from a proxy certificate) and checking the result
(inventory, revocation, role, registration) is the exchange runner's first step, through the
broker's authenticator, so a refused caller is recorded like any other exchange.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, Request
from starlette.types import Scope

from traffic_center.api.services import Services
from traffic_center.broker.caller import Peer

# RFC 9440 §2.2. Client-Cert-Chain (§2.3) is ignored: the chain that counts is the TC CA.
CLIENT_CERT_HEADER = "client-cert"
# Where the request guard leaves the peer it screened, for the route of the same request.
_SCREENED_PEER = "traffic_center.screened_peer"


# The dependencies are coroutines though neither awaits anything: FastAPI runs a plain
# `def` dependency in its thread pool, two thread hand-offs per request for two lookups.
async def services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def peer_certificate_of(scope: Scope) -> str | None:
    """The leaf certificate the TLS layer verified (ASGI TLS extension, PEM)."""
    extensions: dict[str, Any] = scope.get("extensions") or {}
    chain = (extensions.get("tls") or {}).get("client_cert_chain") or []
    return str(chain[0]) if chain else None


async def peer(request: Request) -> Peer:
    return peer_of(request.scope)


def peer_of(scope: Scope) -> Peer:
    """The TLS peer and any Client-Cert it sent; several field lines are kept together (RFC
    9110 §5.3) so a second certificate cannot hide behind the first: the authenticator
    refuses the combination as malformed. The one the request guard screened, if it did."""
    screened: Peer | None = scope.get(_SCREENED_PEER)
    if screened is not None:
        return screened
    name = CLIENT_CERT_HEADER.encode()
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]
    return Peer(
        tls_certificate=peer_certificate_of(scope),
        client_cert_header=", ".join(forwarded) if forwarded else None,
    )


def keep_screened(scope: Scope, peer: Peer) -> None:
    """The peer as the guard screened it, for ``peer_of`` later in this same request (the
    scope lives as long as the request, so no identity outlives it)."""
    scope[_SCREENED_PEER] = peer


ServicesDep = Annotated[Services, Depends(services)]
PeerDep = Annotated[Peer, Depends(peer)]
