"""uvloop's event loop (libuv) for the vendor listener, with the same handshake bounds.

Not the default (server/limits.py, ``event_loop_factory``): out of file descriptors, libuv
accepts and at once closes every new connection (its spare-descriptor trick), so a caller
connecting during a flood of bare connections is reset instead of waiting in the backlog as on
asyncio's loop, which pauses accepting for a second; and if the spare descriptor cannot be
taken back, uvloop closes the listening socket for good (uvloop 0.23, handles/streamserver.pyx).
"""

from __future__ import annotations

import uvloop

from traffic_center.server.limits import HandshakeBounds


class BoundedHandshakeUVLoop(HandshakeBounds, uvloop.Loop):  # type: ignore[misc]
    """uvloop's loop with the handshake bounds. (Its TLS read buffer is allocated lazily by
    the kernel page by page, so it needs no smaller one, unlike asyncio's.)"""
