"""W3C Trace Context: continue the doel's trace when it sent one, start one otherwise."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


def child_traceparent(incoming: str | None) -> str:
    """A traceparent for our call upstream: the same trace id, a new span id (our hop)."""
    trace_id, flags = secrets.token_hex(16), "01"
    if incoming is not None:
        match = _TRACEPARENT.match(incoming.strip().lower())
        if match and match[1] != _INVALID_TRACE_ID and match[2] != _INVALID_SPAN_ID:
            trace_id, flags = match[1], match[3]
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"
