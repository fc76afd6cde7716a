"""W3C Trace Context: continue the doel's trace when it sent one, start one otherwise."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
# What the log says for a traceparent that is not one: the caller's text never reaches a log.
MALFORMED = "malformed"


def child_traceparent(incoming: str | None) -> str:
    """A traceparent for our call upstream: the same trace id, a new span id (our hop)."""
    trace_id, flags = secrets.token_hex(16), "01"
    match = _valid(incoming)
    if match is not None:
        trace_id, flags = match[1], match[3]
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def traceparent_for_log(incoming: str | None) -> str | None:
    """The caller's traceparent as the exchange line shows it: normalised when it is a valid
    version-00 header, ``MALFORMED`` otherwise (it is free text from outside), None if absent.
    """
    if incoming is None:
        return None
    match = _valid(incoming)
    return match[0] if match is not None else MALFORMED


def _valid(incoming: str | None) -> re.Match[str] | None:
    """W3C Trace Context §3.2: version 00, and all-zero trace or parent ids are invalid."""
    if incoming is None:
        return None
    match = _TRACEPARENT.match(incoming.strip().lower())
    if match and match[1] != _INVALID_TRACE_ID and match[2] != _INVALID_SPAN_ID:
        return match
    return None
