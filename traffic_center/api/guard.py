"""Turning callers away before a body byte is read: a refused certificate, an oversized body.

Plain ASGI, in front of the framework's parsing (docs/security.md). A revoked, unknown,
expired or wrong-purpose certificate is answered 403 at once, recorded as a refused caller by
the exchange runner (rule 1 in docs/rules.md; the runner's check, not a second one), and the
connection is closed so the rest of its upload is never read. A body declared larger than the
cap is answered 413 the same way; a chunked one is counted as it arrives and cut at the cap.
The API's largest legitimate body is well under a kilobyte; nothing here ever buffers one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from traffic_center.api import problems
from traffic_center.api.identity import keep_screened, peer_of
from traffic_center.api.services import Services
from traffic_center.domain.errors import CallerRefused, RequestTooLarge, TrafficCenterError

# RFC 9112 §9.6: the server closes after this answer; the unread body is never read.
_CLOSE = (b"connection", b"close")


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(scope)
        if refusal is not None:
            await _answer(refusal, scope, receive, send)
            return
        await _CappedBody(self.app, self.max_body_bytes, _services(scope)).run(scope, receive, send)

    async def _refusal(self, scope: Scope) -> TrafficCenterError | None:
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


class _CappedBody:
    """One request whose body is counted as the app reads it; past the cap it is answered 413
    (if nothing was answered yet), the connection closed, and the app sees the client gone."""

    def __init__(self, app: ASGIApp, cap: int, services: Services) -> None:
        self.app = app
        self.cap = cap
        self.services = services
        self.received = 0
        self.started = False
        self.cut = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.cap:
                    await self._cut_off(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            if self.cut:
                return  # the 413 went out; whatever the app makes of the disconnect does not
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not self.cut:
                raise

    async def _cut_off(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.services.metrics.request_bodies_too_large.inc()
        if not self.started:
            await _answer(_too_large(self.cap), scope, receive, send)
        self.cut = True


def _too_large(cap: int) -> RequestTooLarge:
    return RequestTooLarge(f"a request body on this API is at most {cap} bytes")


async def _answer(error: TrafficCenterError, scope: Scope, receive: Receive, send: Send) -> None:
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
