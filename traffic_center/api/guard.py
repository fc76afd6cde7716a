"""Turning callers away before a body byte is read: a refused certificate, an oversized body.

Plain ASGI, in front of the framework's parsing (docs/security.md). A revoked, unknown,
expired or wrong-purpose certificate is answered 403 at once, recorded as a refused caller by
the exchange runner (rule 1 in docs/rules.md; the runner's check, not a second one), and the
connection is closed so the rest of its upload is never read. A body declared larger than the
cap is answered 413 the same way; a chunked one is counted as it arrives and cut at the cap.
The API's largest legitimate body is well under a kilobyte; nothing here ever buffers one.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from traffic_center.api import problems
from traffic_center.api.identity import keep_screened, peer_of
from traffic_center.api.services import Services
from traffic_center.domain.errors import CallerRefused, RequestTooLarge, TrafficCenterError

# RFC 9112 §9.6: the server closes after this answer; the unread body is never read.
_CLOSE = (b"connection", b"close")


class RequestGuard:
    """The checks; the per-request layer (api/middleware.py) runs them around the app, and
    counts the body against ``max_body_bytes`` as the app reads it."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    async def refusal(self, scope: Scope) -> TrafficCenterError | None:
        """The certificate first (a refused caller learns nothing about sizes), then the size."""
        peer = peer_of(scope)
        if peer.tls_certificate is not None:
            try:
                # Handed on to the route: the inventory is read once per request, and at
                # the same moment in it as before, so a revocation or deactivation is seen
                # by the very next request as before (nothing outlives the request).
                keep_screened(scope, await _services(scope).exchanges.screen(peer))
            except CallerRefused as refused:
                return refused
            except TrafficCenterError:
                pass  # the store is away: the route answers and records that as it always does
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            _services(scope).metrics.request_bodies_too_large.inc()
            return _too_large(self.max_body_bytes)
        return None

    async def cut_off(self, scope: Scope, receive: Receive, send: Send, *, answer: bool) -> None:
        """A body past the cap: counted, and answered 413 if nothing was answered yet; the
        caller then closes the connection and the app sees the client gone."""
        _services(scope).metrics.request_bodies_too_large.inc()
        if answer:
            await refuse(_too_large(self.max_body_bytes), scope, receive, send)


def _too_large(cap: int) -> RequestTooLarge:
    return RequestTooLarge(f"a request body on this API is at most {cap} bytes")


async def refuse(error: TrafficCenterError, scope: Scope, receive: Receive, send: Send) -> None:
    """The refusal's problem, and the connection closed after it."""
    response = problems.problem_for(error)
    response.raw_headers.append(_CLOSE)
    await response(scope, receive, send)


def _services(scope: Scope) -> Services:
    services: Services = scope["app"].state.services
    return services


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has refused a malformed length before we are called
    return None
