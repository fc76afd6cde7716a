"""The per-request layer: request id, metrics by route template, the request guard.

One ASGI layer, so one wrapper around ``send`` and one around ``receive`` per request, where
three middlewares each wrapped ``send`` (issue 14: the hot routes spent ~7 % of their CPU in
the layers). In the order they were nested, outermost first: the request id bound for every
log line and answered in a header (observability/context.py), the request counted and timed
by route template (bounded, never a raw path), the guard's refusals before a body byte is read
and its body cap (api/guard.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from traffic_center.api.guard import RequestGuard, refuse
from traffic_center.observability.context import RequestContext, asked_method_label
from traffic_center.observability.metrics import Metrics, labelled

# Labels from closed sets only (observability.context.method_label): a made-up method would be
# a new series, and a caller's string (a BSN, say) in /metrics.

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class RequestLayer:
    """Request id, metrics and guard around ``app``: as middleware (FastAPI's stack), or
    around a plain route with ``around`` (api/plain.py), then also answering the route's
    errors as Starlette's ExceptionMiddleware would (``handlers``, api/problems.py's)."""

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        handlers: Mapping[Any, ErrorHandler] | None = None,
    ) -> None:
        self.app = app
        self.guard = RequestGuard(max_body_bytes=max_body_bytes)
        self.handlers = handlers
        self._count = labelled(metrics.http_requests)
        self._time = labelled(metrics.http_request_duration)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.around(self.app, self.request(scope, receive, send))

    def request(self, scope: Scope, receive: Receive, send: Send) -> RequestInFlight:
        return RequestInFlight(scope, receive, send, self.guard)

    async def around(self, app: ASGIApp, request: RequestInFlight) -> None:
        context = request.context
        with context:
            try:
                await self._counted(app, request)
            finally:
                context.log_unlogged(request.scope, request.status)

    async def _counted(self, app: ASGIApp, request: RequestInFlight) -> None:
        started = time.perf_counter()
        try:
            await self._guarded(app, request)
        finally:
            scope = request.scope
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = asked_method_label(scope)
            self._count(template, method, str(request.status)).inc()
            self._time(template, method).observe(time.perf_counter() - started)

    async def _guarded(self, app: ASGIApp, request: RequestInFlight) -> None:
        scope = request.scope
        refusal = await self.guard.refusal(scope)
        if refusal is not None:
            await refuse(refusal, scope, request.outer_receive, request.send)
            return
        try:
            await self._handled(app, request)
        except Exception:
            if not request.cut:
                raise

    async def _handled(self, app: ASGIApp, request: RequestInFlight) -> None:
        scope, receive, send = request.scope, request.receive, request.send
        if self.handlers is None:
            await app(scope, receive, send)
            return
        try:
            await app(scope, receive, send)
        except Exception as error:
            handler = _handler_for(self.handlers, error)
            if handler is None:
                raise
            if request.started:
                raise RuntimeError("Caught handled exception, but response already started.") from (
                    error
                )
            response = await handler(Request(scope, receive, send), error)
            await response(scope, receive, send)
            error.__traceback__ = None  # as Starlette: a reused instance would keep growing


def _handler_for(handlers: Mapping[Any, ErrorHandler], error: Exception) -> ErrorHandler | None:
    """Starlette's choice: an HTTP error's status first, then the nearest class."""
    if isinstance(error, HTTPException) and error.status_code in handlers:
        return handlers[error.status_code]
    for kind in type(error).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None


class RequestInFlight:
    """One request through the layer: its context, what was answered, how much was read."""

    __slots__ = (
        "answered",
        "context",
        "cut",
        "guard",
        "outer_receive",
        "outer_send",
        "received",
        "scope",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, guard: RequestGuard) -> None:
        self.scope = scope
        self.outer_receive = receive
        self.outer_send = send
        self.guard = guard
        self.context = RequestContext(scope)
        self.status = 500  # if the app raises before answering, the server answers 500
        self.started = False  # the app (or the guard) began an answer
        self.answered = False  # ... and it went out
        self.received = 0
        self.cut = False  # past the body cap: the app sees the client gone, its answer dropped

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.cut:
                return
            self.answered = True
            self.status = int(message["status"])
            headers = self.context.answer_headers(message.get("headers", ()))
            message = {**message, "headers": headers}
        elif self.cut:
            return  # the 413 went out; whatever the app makes of the disconnect does not
        await self.outer_send(message)

    async def receive(self) -> Message:
        if self.cut:
            return {"type": "http.disconnect"}
        message = await self.outer_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.guard.max_body_bytes:
                await self.guard.cut_off(
                    self.scope, self.outer_receive, self.send, answer=not self.started
                )
                self.cut = True
                return {"type": "http.disconnect"}
        return message
