"""uvloop's event loop (libuv) for the listeners, with the same limits: the default.

It moves a dossier with less CPU per MB than asyncio's loop (README, "Performance"). Two
things differ from asyncio's loop, and one of them is set right here:

- TLS: uvloop's own TLS protocol, once it has sent close_notify, reads and drops what the
  client still sends until the client's close_notify or the shutdown timeout (its
  sslproto.pyx, ``_do_read_into_void``): a client could go on sending far past the lingering
  close's 1 MiB (tests/test_early_refusal.py's chunked body over the cap got 50 MB in after
  its 413). So the listeners speak TLS through asyncio's protocol on uvloop too
  (``ServerTLSProtocol``, by ``HandshakeBounds``), which aborts the connection at the first byte
  after close_notify, over uvloop's TCP transport. (The relay's connections to bron LAS
  endpoints keep uvloop's TLS: they are ours, and a bron sends a bounded answer.)
- Out of file descriptors, asyncio's loop stops accepting for a second and new connections
  wait in the kernel's backlog. libuv keeps a spare descriptor: it frees it to accept and at
  once close each waiting connection (the caller is reset and tries again), then takes it
  back. If it cannot take it back, uvloop 0.23.0 (libuv 1.52.1, as locked) leaves the
  connections in the backlog and tries one accept at every turn of the loop (seen with
  strace: a busy loop while it lasts, other connections still served). Neither loop closes
  its listener (tests/test_connection_limits.py, with the node's limit lowered under it).
  ``TC_EVENT_LOOP=asyncio`` is there for an operator whose callers should wait rather than
  be reset.
"""

from __future__ import annotations

import uvloop

from traffic_center.server.limits import HandshakeBounds


class BoundedHandshakeUVLoop(HandshakeBounds, uvloop.Loop):  # type: ignore[misc]
    """uvloop's loop with the listeners' TLS (``HandshakeBounds``: asyncio's TLS protocol over
    uvloop's TCP transport, see above)."""
