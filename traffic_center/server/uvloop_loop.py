"""uvloop's event loop (libuv) for the listeners, with the same handshake bounds; not the default.

It moves a dossier with about a fifth less CPU per MB than asyncio's loop (README,
"Performance"), but two of the vendor listener's limits hold only on asyncio's loop:

- A TLS connection the node closes: asyncio's loop sends close_notify and aborts the
  connection at the first byte the client still sends after it, so the lingering close
  (server/limits.py, ``LingeringClose``) is the last a client may send: 1 MiB. uvloop 0.23
  reads and drops whatever comes (``_do_read_into_void`` in its sslproto.pyx) until the
  client's close_notify or the shutdown timeout (``TC_TLS_HANDSHAKE_TIMEOUT_SECONDS``):
  tests/test_early_refusal.py's chunked body over the cap saw 50 MB taken after the 413.
- Out of file descriptors, asyncio's loop stops accepting for a second and new connections
  wait in the kernel's backlog. libuv keeps a spare descriptor: it frees it to accept and at
  once close each waiting connection (the caller is reset), then takes it back. If it cannot
  take it back, uvloop 0.23.0 (libuv 1.52.1, as locked) leaves the connections in the backlog
  and tries one accept at every turn of the loop (seen with strace: a busy loop while it
  lasts, other connections still served); the listener is not closed, on either loop
  (tests/test_connection_limits.py, with the node's limit lowered under it).
"""

from __future__ import annotations

import uvloop

from traffic_center.server.limits import HandshakeBounds


class BoundedHandshakeUVLoop(HandshakeBounds, uvloop.Loop):  # type: ignore[misc]
    """uvloop's loop with the handshake bounds. (Its TLS read buffer is allocated lazily by
    the kernel page by page, so it needs no smaller one, unlike asyncio's.)"""
