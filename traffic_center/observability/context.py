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
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from starlette.types import Scope

from traffic_center.domain.las_contract import TRACEPARENT_HEADER, TRANSACTION_HEADER

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own id is kept only when it is a UUID: it ends up in logs and the audit record,
# so free text (a BSN, say) must not get in, and it must fit the record's 36 characters.
_ACCEPTABLE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
_TRACEPARENT_NAME = TRACEPARENT_HEADER.lower().encode()

log = structlog.get_logger("traffic_center.http")

# HTTP methods as metric and log labels: a closed set, never the caller's string (RFC 9110
# §9.3 methods; anything else is "other").
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


# The method the client sent, where the app answers the request as another one's (HEAD as
# GET, api/app.py): metrics and the answer line name the one sent.
ASKED_METHOD = "traffic_center.asked_method"


def asked_method_label(scope: Scope) -> str:
    return method_label(str(scope.get(ASKED_METHOD) or scope.get("method", "")))


@dataclass(slots=True)
class AnswerNote:
    """What one request's handling said about its answer; mutated in place by the layers."""

    logged: bool = False
    code: str | None = None
    transaction_id: str | None = None
    traceparent: str | None = None  # as the caller sent it: validate before logging
    request_id: str | None = None


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
    """The id of the request being handled (bound by ``RequestContext``), if any."""
    note = _answer_note.get()
    return note.request_id if note is not None else None


class RequestContext:
    """One request's id and answer note: bound for every log line while the request is
    handled (``with``), answered in a header, and the backstop line if nothing logged the
    answer. The per-request layer (api/middleware.py) holds one per request."""

    __slots__ = ("_header", "_note_token", "_tokens", "note", "request_id")

    def __init__(self, scope: Scope) -> None:
        given, traceparent = _headers(scope, _REQUEST_ID_NAME, _TRACEPARENT_NAME)
        # Kept as sent (the contract: "yours if it was a UUID"), case and all: the caller
        # looks its own id up in its logs.
        self.request_id = given if given and _ACCEPTABLE.match(given) else str(uuid.uuid4())
        self._header = (_REQUEST_ID_NAME, self.request_id.encode())
        self.note = AnswerNote(traceparent=traceparent, request_id=self.request_id)

    def __enter__(self) -> RequestContext:
        self._note_token = _answer_note.set(self.note)
        self._tokens = structlog.contextvars.bind_contextvars(request_id=self.request_id)
        return self

    def __exit__(self, *_exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)
        _answer_note.reset(self._note_token)

    def answer_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """An answer's headers with the request id, and the exchange's transaction id."""
        answered = [*headers, self._header]
        _add_transaction_id(answered, self.note.transaction_id)
        return answered

    def log_unlogged(self, scope: Scope, status: int) -> None:
        """The backstop line for an answer of 400 or more that no exchange line covered."""
        if status >= 400 and not self.note.logged:
            _log_answer(scope, status, self.note.code, self.request_id)


def _add_transaction_id(headers: list[tuple[bytes, bytes]], transaction_id: str | None) -> None:
    """The exchange's transaction id, unless the answer names it already (a relay's 200)."""
    name = TRANSACTION_HEADER.lower().encode()
    if transaction_id is None or any(key.lower() == name for key, _ in headers):
        return
    headers.append((name, transaction_id.encode()))


def _headers(scope: Scope, *names: bytes) -> list[str | None]:
    """The first value of each header named (lower case), in one pass over the headers."""
    found: list[str | None] = [None] * len(names)
    for key, value in scope.get("headers", []):
        name = key.lower()
        if name in names:
            at = names.index(name)
            if found[at] is None:
                found[at] = value.decode("latin-1")
    return found


def _log_answer(scope: Scope, status: int, code: str | None, request_id: str) -> None:
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    emit = log.error if status >= 500 else log.warning if status in (401, 403) else log.info
    emit(
        "answer",
        status=status,
        code=code,
        route=route,
        method=asked_method_label(scope),
        request_id=request_id,
    )
