"""Operations served as plain ASGI in front of their FastAPI declarations (issue 14).

The hot operations skip FastAPI's per-request body and dependency plumbing. Each keeps its
declaration (the contract's source: openapi.yaml is generated from it); the plain route
registered in front of it takes the same parameters with the same types, built from the
declaration's own annotations, and refuses what they refuse with the same
RequestValidationError (a body that is not even JSON too), so api/problems.py
answers every refusal as before.

They are served before FastAPI's middleware stack (``PlainFront``): a request for one passes
one layer (api/middleware.py: request id, metrics, the request guard) where it passed ten, and
gets from it what the stack gave it: the same exception handlers (api/problems.py's table),
and the 500 problem for anything else. Everything else goes through FastAPI unchanged.
"""

from __future__ import annotations

import email.message
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from traffic_center.api.identity import peer_of
from traffic_center.api.middleware import ErrorHandler, RequestInFlight, RequestLayer
from traffic_center.api.problems import unreadable_body
from traffic_center.api.services import Services
from traffic_center.broker.caller import Peer
from traffic_center.observability.metrics import Metrics

BodyT = TypeVar("BodyT")


@dataclass(frozen=True)
class PlainCall(Generic[BodyT]):
    """One request's validated parameters, as FastAPI would have passed them."""

    scope: Scope
    path: Mapping[str, Any]
    headers: Mapping[str, Any]  # by header name; None when absent (all are optional)
    body: BodyT

    @property
    def services(self) -> Services:
        services: Services = self.scope["app"].state.services
        return services

    @property
    def peer(self) -> Peer:
        return peer_of(self.scope)


# The operation itself: what the declaration's function does, answered as an ASGI app.
Handler = Callable[[PlainCall[BodyT]], Awaitable[ASGIApp]]


class PlainRoute(Route):
    """A POST operation with a JSON body, path parameters and optional headers.

    ``path_params`` and ``headers`` map each name (a header's as sent, lower case) to the
    declaration's annotation, so the constraints are written once.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str,
        body: Any,
        handler: Handler[Any],
        path_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        app = _PlainApp(body, handler, path_params or {}, headers or {})
        super().__init__(path, app, methods=["POST"], name=name, include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            # As FastAPI's routes do: metrics and the answer line label by this template.
            child_scope["route"] = self
        return match, child_scope


class PlainFront:
    """The plain routes served straight from the server, before FastAPI's middleware stack.

    The stack's other layers do nothing for them: no OpenTelemetry configured, no FastAPI
    body limit (the guard caps bodies), no dependency exit stack; its Router's choice is made
    here the same way, from the router's list as it is at each request.
    """

    def __init__(
        self, routes: list[BaseRoute], handlers: Mapping[Any, ErrorHandler], layer: RequestLayer
    ) -> None:
        self._routes = routes
        # As FastAPI splits them: the handler for Exception (or 500) is the last resort,
        # outside the per-request layer; the others answer inside it.
        self._unexpected = next(h for key, h in handlers.items() if key in (500, Exception))
        self._layer = layer

    @classmethod
    def of(cls, app: Any, *, metrics: Metrics, max_body_bytes: int) -> PlainFront:
        """For a FastAPI app whose exception handlers are installed."""
        handled = {k: h for k, h in app.exception_handlers.items() if k not in (500, Exception)}
        layer = RequestLayer(metrics=metrics, max_body_bytes=max_body_bytes, handlers=handled)
        return cls(app.router.routes, app.exception_handlers, layer)

    def route_for(self, scope: Scope) -> tuple[PlainRoute, Scope] | None:
        """The plain route the router would choose for this request, if it is one: its first
        full match, looked for among the plain routes that lead the router's list (the
        router's choice is among them; past them, the request is FastAPI's)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        for route in self._routes:
            if not isinstance(route, PlainRoute):
                return None
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
        return None

    async def serve(
        self, route: PlainRoute, child_scope: Scope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = self._layer.request(scope, receive, send)
        try:
            await self._layer.around(functools.partial(_routed, route, child_scope), request)
        except Exception as error:
            await self._server_error(error, request)
            raise

    async def _server_error(self, error: Exception, request: RequestInFlight) -> None:
        """As Starlette's ServerErrorMiddleware: the 500 problem, unless an answer went out;
        the error then goes on to the server, which logs it."""
        scope = request.scope
        response = await self._unexpected(Request(scope), error)
        if not request.answered:
            await response(scope, request.outer_receive, request.outer_send)


async def _routed(
    route: PlainRoute, child_scope: Scope, scope: Scope, receive: Receive, send: Send
) -> None:
    """The route, as the router hands a request over once it has chosen: the layer has run
    the guard before the scope names the route (a refusal is counted as unmatched)."""
    scope.update(child_scope)
    await route.handle(scope, receive, send)


def json_answer(content: bytes | str, *, status_code: int = 200) -> Response:
    """An answer as FastAPI builds one from a response model (its dump_json fast path)."""
    return Response(content, status_code=status_code, media_type="application/json")


class _PlainApp:
    """Validate, then the handler: the steps FastAPI took for the declaration."""

    def __init__(
        self,
        body: Any,
        handler: Handler[Any],
        path_params: Mapping[str, Any],
        headers: Mapping[str, Any],
    ) -> None:
        self._body = TypeAdapter(body)
        self._handler = handler
        self._path_params = {name: TypeAdapter(kind) for name, kind in path_params.items()}
        self._headers = {name: TypeAdapter(kind) for name, kind in headers.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)  # its headers parsed once, kept for _validated
        received = await _json_body(request)
        answer = await self._handler(self._validated(scope, request.headers, received))
        await answer(scope, receive, send)

    def _validated(self, scope: Scope, given_headers: Headers, received: Any) -> PlainCall[Any]:
        """Every parameter checked, the errors together in FastAPI's order (path, header,
        body) and at its locations."""
        errors: list[dict[str, Any]] = []
        given_path = scope["path_params"]
        path = {
            name: _checked(adapter, given_path[name], ("path", name), errors)
            for name, adapter in self._path_params.items()
        }
        headers = {
            name: _optional(adapter, given_headers.get(name), ("header", name), errors)
            for name, adapter in self._headers.items()
        }
        if received is _ABSENT:  # an error, so nothing below returns without a body
            errors.append(
                {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
            )
            body = None
        else:
            body = _checked(self._body, received, ("body",), errors)
        if errors:
            raise RequestValidationError(errors, body=None if received is _ABSENT else received)
        return PlainCall(scope=scope, path=path, headers=headers, body=body)


# No body at all; FastAPI's "Field required" at ("body",), not a validation of nothing.
_ABSENT: Any = object()


def _optional(
    adapter: TypeAdapter[Any], value: str | None, loc: tuple[str, ...], errors: list[dict[str, Any]]
) -> Any:
    """An optional header: absent is the default (None), unchecked, as FastAPI does."""
    return None if value is None else _checked(adapter, value, loc, errors)


def _checked(
    adapter: TypeAdapter[Any], value: Any, loc: tuple[str, ...], errors: list[dict[str, Any]]
) -> Any:
    """The value validated as FastAPI validates a parameter; None with its errors noted."""
    try:
        return adapter.validate_python(value, from_attributes=True)
    except ValidationError as invalid:
        errors.extend(
            {**error, "loc": (*loc, *error["loc"])} for error in invalid.errors(include_url=False)
        )
        return None


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads a JSON body parameter: parsed if its content type is JSON
    (application/json or application/*+json), else the raw bytes, which the model then
    refuses; no type at all is not JSON (strict_content_type). JSON that does not parse is
    a validation error at ("body", position); a body that cannot be read or decoded is one
    at ("body",) (api/problems.unreadable_body: 422, as for the declaration).
    """
    try:
        raw = await request.body()
        if not raw:
            return _ABSENT
        return json.loads(raw) if _declares_json(request.headers.get("content-type")) else raw
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ],
            body=error.doc,
        ) from error
    except Exception as error:  # e.g. not UTF-8, or the client gone mid-body
        raise unreadable_body() from error


def _declares_json(content_type: str | None) -> bool:
    if content_type == "application/json":
        return True  # what every LAS sends; the parse below costs more than the rest
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
