"""The request id: bound per request in the log context, returned to the caller, audited.

Also the backstop log line: every answer of 400 or more that no exchange line covered (a
refusal before the exchange runner, a 503 while the store is away, a 404 for an unknown path)
gets one ``answer`` line with its request id, status, code and route.

An answer to an exchange also carries the exchange's transaction id (``X-OSO-Transactie-Id``,
the key of its audit record), whatever its status: the exchange line notes it here, the
middleware puts it in the header. The caller's ``traceparent`` is kept here for that line.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from traffic_center.domain.las_contract import TRACEPARENT_HEADER, TRANSACTION_HEADER

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own id is kept only when it is a UUID: it ends up in logs and the audit record,
# so free text (a BSN, say) must not get in, and it must fit the record's 36 characters.
_ACCEPTABLE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


log = structlog.get_logger("traffic_center.http")

# HTTP methods as metric and log labels: a closed set, never the caller's string (RFC 9110
# §9.3 methods; anything else is "other").
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


@dataclass(slots=True)
class AnswerNote:
    """What one request's handling said about its answer; mutated in place by the layers."""

    logged: bool = False
    code: str | None = None
    transaction_id: str | None = None
    traceparent: str | None = None  # as the caller sent it: validate before logging


_answer_note: ContextVar[AnswerNote | None] = ContextVar("answer_note", default=None)


def note_answer_logged(*, transaction_id: str | None = None) -> None:
    """An exchange line covers this request's answer: no backstop line is needed; the answer
    carries ``transaction_id`` unless it already names one (a relay's own)."""
    note = _answer_note.get()
    if note is not None:
        note.logged = True
        if transaction_id is not None:
            note.transaction_id = transaction_id


def incoming_traceparent() -> str | None:
    """The ``traceparent`` header of this request, unchecked (see ``relay.trace``)."""
    note = _answer_note.get()
    return note.traceparent if note is not None else None


def note_answer_code(code: str) -> None:
    """The problem code answered, for the backstop line."""
    note = _answer_note.get()
    if note is not None:
        note.code = code


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None


class RequestIdMiddleware:
    """Binds ``request_id`` for every log line of the request and answers it in a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.lower())
        request_id = given.lower() if given and _ACCEPTABLE.match(given) else str(uuid.uuid4())

        note = AnswerNote(traceparent=_header(scope, TRACEPARENT_HEADER))
        status = 500  # if the app raises before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                _add_transaction_id(headers, note.transaction_id)
                message = {**message, "headers": headers}
            await send(message)

        token = _answer_note.set(note)
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    if status >= 400 and not note.logged:
                        _log_answer(scope, status, note.code, request_id)
        finally:
            _answer_note.reset(token)


def _add_transaction_id(headers: list[tuple[bytes, bytes]], transaction_id: str | None) -> None:
    """The exchange's transaction id, unless the answer names it already (a relay's 200)."""
    name = TRANSACTION_HEADER.lower().encode()
    if transaction_id is None or any(key.lower() == name for key, _ in headers):
        return
    headers.append((name, transaction_id.encode()))


def _header(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return None


def _log_answer(scope: Scope, status: int, code: str | None, request_id: str) -> None:
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    emit = log.error if status >= 500 else log.warning if status in (401, 403) else log.info
    emit(
        "answer",
        status=status,
        code=code,
        route=route,
        method=method_label(str(scope.get("method", ""))),
        request_id=request_id,
    )
