"""The vendor listener on httptools, uvicorn's C HTTP/1.1 parser (llhttp): the default.

Imported only when httptools is installed (server/tls.py, ``vendor_protocol``); the limits and
the TLS scope are the same mixins as on uvicorn's h11 protocol, the fallback.
"""

from __future__ import annotations

from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from traffic_center.server.limits import BoundedConnection
from traffic_center.server.tls import TLSScope

# A request's line and headers at most this long, as h11's default (uvicorn's h11 protocol);
# llhttp has no bound of its own, and the header deadline alone would let 10 s of a fast line in.
MAX_HEADER_BYTES = 16 * 1024


class BoundedHttpToolsProtocol(BoundedConnection, HttpToolsProtocol):
    """The limits on uvicorn's httptools protocol, told by the parser's callbacks; llhttp
    refuses a request with two framings itself (400, closed)."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._max_header_bytes = config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self._header_bytes = 0
        self._in_message = False
        # This connection's requests whose answers are not complete: the one running and any
        # pipelined behind it (``connection_lost``).
        self._cycles: list[RequestResponseCycle] = []

    def data_received(self, data: bytes) -> None:
        if not self._in_message:
            # Any byte between requests starts the clock, as on h11: llhttp skips blank lines
            # before a request without a callback, and uvicorn's keep-alive timer is off.
            self._request_begun()
        super().data_received(data)
        if self._header_deadline is not None:  # a request's headers are still coming
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes and not self.transport.is_closing():
                self.send_400_response("Request headers too large.")

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        self._in_message = True
        self._request_begun()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._headers_received()
        super().on_headers_complete()
        self._body_due()
        if self.cycle is not None:
            self._cycles = [c for c in self._cycles if not c.response_complete]
            self._cycles.append(self.cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        """Every unanswered request of the connection learns it is gone. uvicorn tells only
        the last one parsed: with requests pipelined behind a running one, that is a queued
        one, and the running one (a relay, say) went on streaming into a closed transport
        until asyncio's TLS transport raised AttributeError on its next write."""
        super().connection_lost(exc)
        for cycle in self._cycles:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._cycles = []

    def on_message_complete(self) -> None:
        self._in_message = False
        self._body_received()
        super().on_message_complete()


class TLSScopeHttpToolsProtocol(TLSScope, BoundedHttpToolsProtocol):
    """The bounded httptools protocol with the TLS scope: the default."""
