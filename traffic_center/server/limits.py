"""What one caller can hold of a listener: handshake, idle and header timeouts, open connections.

uvicorn (0.54) and asyncio leave these open: asyncio waits 60 s for a TLS handshake, uvicorn
arms its keep-alive timer only after a first response (an idle connection that never sends a
request stays open for good), h11 has no deadline for a request's headers, and uvicorn's
``limit_concurrency`` counts requests, not connections. Issue 10, rows 4 and 5; the limits
and their settings are listed in docs/security.md.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import logging
import socket
import ssl
import uuid
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from traffic_center.api.problems import problem_bytes
from traffic_center.domain.errors import MalformedRequest
from traffic_center.domain.las_contract import PROBLEM_MEDIA_TYPE
from traffic_center.observability.logging import Throttle
from traffic_center.observability.metrics import HandshakeRefusals

# Connections refused at the cap: one log line per interval, with the count.
REFUSAL_LOG_SECONDS = 10.0

logger = logging.getLogger("traffic_center.server")


@dataclass(frozen=True)
class ConnectionLimits:
    handshake_seconds: float = 10.0
    header_seconds: float = 10.0
    body_seconds: float = 10.0
    max_connections: int = 1000
    # One school's certificate may not take the whole process: design.md, "Limits".
    max_connections_per_certificate: int = 64
    # Lingering close (``LingeringClose``): after an answer given before its request was read
    # to the end, what the client still sends is read and dropped for at most this long, this
    # long a silence, and this many bytes.
    linger_seconds: float = 2.0
    linger_silence_seconds: float = 0.5
    linger_bytes: int = 1024 * 1024


# A TLS-terminating load balancer's proxy certificate carries every school's traffic: the
# per-certificate cap is not for it (pki.ca.PROXY_URI, as it stands in the DER).
_PROXY_URI_DER = b"urn:oso:traffic-center:proxy"


class TcpConfig(Config):
    """uvicorn's config, its listening socket TCP_NODELAY-able: uvicorn makes it with
    protocol 0, the connections asyncio accepts from it inherit that 0, and asyncio sets
    TCP_NODELAY only on a socket whose protocol says TCP, so every small answer would wait
    ~40 ms for the peer's delayed ACK. The same descriptor, reopened, reads its protocol from
    the kernel. For every listener of the node: the vendor's (the one ``--workers`` share)
    and the ops listener's, both bound before their apps start (server/runner.py)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        reopened = socket.socket(fileno=sock.detach())
        reopened.set_inheritable(True)
        return reopened


class ListenerConfig(TcpConfig):
    """uvicorn's config with our limits; picklable, so uvicorn's workers get them too."""

    def __init__(
        self, app: Any, *, limits: ConnectionLimits, uvloop: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits
        self.uvloop = uvloop
        self.refusals = Throttle(REFUSAL_LOG_SECONDS)
        self.memory = MemoryReturn()
        # Open connections per client certificate (its DER: _certificate_key), in this process.
        self.per_certificate: collections.Counter[bytes] = collections.Counter()

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        """The loop uvicorn's own ``Server.run`` (each worker) creates."""
        return event_loop_factory(self.limits, uvloop=self.uvloop)


def event_loop_factory(
    limits: ConnectionLimits, *, uvloop: bool = False
) -> Callable[[], asyncio.AbstractEventLoop]:
    """The listeners' loop: uvloop's (the default), or asyncio's when asked for
    (server/uvloop_loop.py says how they differ)."""
    if uvloop:
        from traffic_center.server.uvloop_loop import BoundedHandshakeUVLoop

        return lambda: BoundedHandshakeUVLoop(handshake_seconds=limits.handshake_seconds)
    return lambda: BoundedHandshakeLoop(handshake_seconds=limits.handshake_seconds)


class HandshakeBounds(asyncio.AbstractEventLoop):
    """What the listeners' loop adds, on asyncio's loop or uvloop's: its TLS servers speak TLS
    through ``ServerTLSProtocol`` over a plain TCP transport, with the handshake bounded
    (uvicorn passes no timeout: 60 s), and it keeps the listeners to refused handshakes
    (reported by ``ReportingSSLObject``).

    Until the handshake is done the connection is the TLS protocol's, not the app's: only the
    handshake timeout can cut off a client that connects and sends nothing. The same bound
    applies to flushing and waiting for a peer's close_notify.
    """

    def __init__(self, *, handshake_seconds: float) -> None:
        super().__init__()
        self.handshake_seconds = handshake_seconds
        # The app on this loop listens here (api/app.py); metrics, not logs, by design:
        # a scan of the port must not flood the log.
        self.handshake_refusals = HandshakeRefusals()

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Server:
        context = kwargs.pop("ssl", None)
        if context is None:
            return await super().create_server(protocol_factory, *args, **kwargs)
        # No waiter: nothing awaits the handshake (asyncio's own TLS server awaits it only to
        # log a failure in debug mode). (typeshed has the waiter as required, the timeouts as
        # int.)
        options: dict[str, Any] = {
            "waiter": None,
            "server_side": True,
            "ssl_handshake_timeout": kwargs.pop("ssl_handshake_timeout", self.handshake_seconds),
            "ssl_shutdown_timeout": kwargs.pop("ssl_shutdown_timeout", self.handshake_seconds),
        }

        def tls_protocol() -> ServerTLSProtocol:
            return ServerTLSProtocol(self, protocol_factory(), context, **options)

        return await super().create_server(tls_protocol, *args, **kwargs)


class ReportingSSLObject(ssl.SSLObject):
    """The vendor listener's TLS object (its context's ``sslobject_class``): a handshake it
    fails is reported to the serving loop's listeners. Neither asyncio nor uvloop reports a
    failed server-side handshake anywhere (only as a debug line); both call this method, and
    its error is the one place the reason is visible."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # more bytes to come: not an outcome
        except ssl.SSLError as error:
            _report_refusal(error)
            raise


def _report_refusal(error: ssl.SSLError) -> None:
    """To the listeners of the loop running this handshake (a blocking caller has none)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    refusals = getattr(loop, "handshake_refusals", None)
    if isinstance(refusals, HandshakeRefusals):
        refusals.report(error)


class BoundedHandshakeLoop(HandshakeBounds, asyncio.SelectorEventLoop):
    """asyncio's loop with the listeners' TLS (``HandshakeBounds``)."""


class ServerTLSProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer instead of 256 KiB per connection: the
    listeners' TLS on either loop (server/uvloop_loop.py says why on uvloop's too: it aborts a
    connection at the first byte the client sends after the node's close_notify).

    asyncio allocates the whole buffer for every accepted connection, idle or not: 500 idle
    connections held about 150 MB. A request on the vendor API is small (its body is capped
    at a few kB) and a TLS record at most 16 KiB (RFC 8446 §5.1), so 32 KiB costs nothing.
    """

    max_size = 32 * 1024


class MemoryReturn:
    """Gives the memory of a flood of connections back to the system once it has passed.

    Freed, the buffers of hundreds of connections stay in the C allocator's heap (glibc trims
    only its top), so a node that survived a flood would keep its peak for good. When the open
    connections fall to a quarter of a peak of at least ``FLOOD`` (or below), the heap is
    trimmed: once per flood, a few milliseconds.
    """

    FLOOD = 100

    def __init__(self) -> None:
        self.peak = 0

    def opened(self, count: int) -> None:
        self.peak = max(self.peak, count)

    def closed(self, count: int) -> None:
        if self.peak >= self.FLOOD and count <= self.peak // 4:
            self.peak = count
            _trim_heap()


def _trim_heap() -> None:
    """Collect the connections' reference cycles, then glibc's malloc_trim(0) (a no-op where
    there is no glibc: musl, macOS)."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


class BoundedConnection(asyncio.Protocol):
    """The limits of one vendor connection, for either of uvicorn's HTTP/1.1 protocols (h11's
    or httptools'): connection caps (per process and per client certificate), an idle
    deadline before the first request, and deadlines for each request's headers and body.

    A mixin, before uvicorn's class; the protocol below it says when a request's first byte
    arrived (``_request_begun``), when its headers are in (``_headers_received``), whether a
    body is still due (``_body_due``) and when it is in (``_body_received``).
    """

    if TYPE_CHECKING:  # uvicorn's protocol has these
        config: Config
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        connections: set[Any]
        timeout_keep_alive: int
        timeout_keep_alive_task: asyncio.TimerHandle | None

        server_state: Any

        def timeout_keep_alive_handler(self) -> None: ...

    listener: ListenerConfig
    # The verified client certificate (DER), read once per connection: the cap counts by it,
    # and the TLS scope (server/tls.py) answers it as PEM.
    peer_der: bytes | None = None
    _header_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None
    _certificate: bytes | None = None

    def send_400_response(self, msg: str) -> None:
        """A request the server cannot parse (a bad request line or header, headers over
        their cap, two framings), answered as every refusal is: problem+json with a stable
        code and an X-Request-Id, uvicorn's reason as the detail; uvicorn answered text/plain
        and no id. The connection closes after it, as it did."""
        body = problem_bytes(MalformedRequest(msg))
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"x-request-id: " + str(uuid.uuid4()).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(self.config, ListenerConfig), "built by mtls_config"
        self.listener = self.config
        self.peer_der = peer_certificate_der(transport)
        # uvicorn's protocol and its request cycles close through this one (``_close``). (On
        # uvloop the transport is not an asyncio.Transport subclass, but has its methods.)
        closing = _ClosingTransport(cast(asyncio.Transport, transport), self._close)
        super().connection_made(cast(asyncio.Transport, closing))
        self.listener.memory.opened(len(self.connections))
        if len(self.connections) > self.listener.limits.max_connections:
            self._refuse()
            return
        self._certificate = _certificate_key(self.peer_der)
        if self._certificate is not None:
            held = self.listener.per_certificate
            held[self._certificate] += 1
            if held[self._certificate] > self.listener.limits.max_connections_per_certificate:
                self._refuse(per_certificate=True)
                return
        # uvicorn arms keep-alive only after a response; a connection that never asks is idle too.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_received()
        self._body_received()
        super().connection_lost(exc)
        self.listener.memory.closed(len(self.connections))
        if self._certificate is not None:
            held = self.listener.per_certificate
            held[self._certificate] -= 1
            if held[self._certificate] <= 0:
                del held[self._certificate]
            self._certificate = None

    def _close(self, transport: asyncio.Transport) -> None:
        """uvicorn closes after an answer with ``Connection: close`` (a 413 or 403 given before
        the body was read, a 400), or an idle connection. Closed at once, a socket with unread
        bytes makes the kernel send a reset, and a client still sending its body loses the
        answer it had not read yet; so a request not read to its end lingers first."""
        request_unfinished = self._header_deadline is not None or self._body_deadline is not None
        if request_unfinished and not transport.is_closing():
            LingeringClose.start(transport, self, self.listener.limits, self.loop)
        else:
            transport.close()

    def _refuse(self, *, per_certificate: bool = False) -> None:
        """Over a cap: closed at once, before a byte is read; logged at most once an interval."""
        self.transport.abort()
        count = self.listener.refusals.hit()
        if count is not None:
            limits = self.listener.limits
            logger.warning(
                "connection limit (%s) reached: %d connections refused since the last such line",
                f"{limits.max_connections_per_certificate} per certificate"
                if per_certificate
                else str(limits.max_connections),
                count,
            )

    def _request_begun(self) -> None:
        """The first byte of a request starts its clock; a byte now and then cannot reset it."""
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.listener.limits.header_seconds, self.transport.abort
            )

    def _headers_received(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _body_due(self) -> None:
        """A request's body must arrive within the body timeout once its headers are in: the
        API's bodies are small, so a body trickled a byte at a time is an attack, not a LAS."""
        if self._body_deadline is None:
            self._body_deadline = self.loop.call_later(
                self.listener.limits.body_seconds, self.transport.abort
            )

    def _body_received(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None


class LingeringClose(asyncio.Protocol):
    """A closing connection's protocol while it reads and drops what its client still sends
    (nginx's lingering_close, Apache's lingering close), then closes it: at a silence, or at
    the client's end of the connection. Bounded, so it cannot be used to hold connections:
    past ``linger_seconds`` or ``linger_bytes`` the connection is aborted. Until it is lost it
    is still its HTTP protocol's connection, counted by the connection caps.

    Through the transport, so on TLS the records are decrypted and dropped (close_notify goes
    out when it closes); uvicorn's parser sees none of it.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        connection: asyncio.Protocol,
        limits: ConnectionLimits,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.transport = transport
        self.connection = connection
        self.loop = loop
        self.silence_seconds = limits.linger_silence_seconds
        self.bytes_left = limits.linger_bytes
        self.closed = False
        self.deadline = loop.call_later(limits.linger_seconds, self._cut_off)
        self.silence = loop.call_later(self.silence_seconds, self._close)

    @classmethod
    def start(
        cls,
        transport: asyncio.Transport,
        connection: asyncio.Protocol,
        limits: ConnectionLimits,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        transport.set_protocol(cls(transport, connection, limits, loop))
        transport.resume_reading()  # uvicorn pauses reading when the app does not read

    def data_received(self, data: bytes) -> None:
        self.bytes_left -= len(data)
        if self.bytes_left < 0:
            self._cut_off()
            return
        if self.closed:  # asyncio's TLS still reads while it flushes: once is enough
            return
        self.silence.cancel()
        self.silence = self.loop.call_later(self.silence_seconds, self._close)

    def eof_received(self) -> bool | None:
        self._close()
        return None

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clocks()
        self.connection.connection_lost(exc)

    def _close(self) -> None:
        self._stop_clocks()
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _cut_off(self) -> None:
        self._stop_clocks()
        self.transport.abort()

    def _stop_clocks(self) -> None:
        self.deadline.cancel()
        self.silence.cancel()


class _ClosingTransport:
    """The connection's transport as its HTTP protocol holds it, its ``close`` the connection's
    (``BoundedConnection._close``): uvicorn closes in a dozen places, its request cycles among
    them, and all of them through the protocol's transport. Everything else is the transport's
    own: looked up there once, then an attribute of this object, so a relay's writes cost no
    extra call."""

    def __init__(
        self, transport: asyncio.Transport, close: Callable[[asyncio.Transport], None]
    ) -> None:
        self._transport = transport
        self._on_close = close
        self._closing = False

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._on_close(self._transport)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def abort(self) -> None:
        self._closing = True
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._transport, name)
        setattr(self, name, value)
        return value


class BoundedH11Protocol(BoundedConnection, H11Protocol):
    """The limits on uvicorn's h11 protocol (the fallback without httptools), read from h11's
    state after each chunk; and no request with two framings."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        size = config.h11_max_incomplete_event_size
        self.conn = (
            _SingleFramingConnection(h11.SERVER)
            if size is None
            else _SingleFramingConnection(h11.SERVER, size)
        )

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._request_begun()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._headers_received()
        if self.conn.their_state is h11.SEND_BODY:
            self._body_due()
        else:
            self._body_received()


def peer_certificate_der(transport: asyncio.BaseTransport) -> bytes | None:
    """The client certificate TLS verified (DER), or None: not TLS, or no certificate."""
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


def _certificate_key(der: bytes | None) -> bytes | None:
    """What the per-certificate cap counts a connection under: its certificate's bytes (the
    same certificate, the same key; no digest to make per connection), or None: no
    certificate, or a proxy's, which the cap does not count."""
    if not der or _PROXY_URI_DER in der:
        return None
    return der


class _SingleFramingConnection(h11.Connection):
    """RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length may be an attempt
    at request smuggling; the server may reject it and must then close the connection. h11
    (0.16) lets Transfer-Encoding win and keeps the connection; uvicorn answers a
    RemoteProtocolError with 400 and ``Connection: close``."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError(
                    "both Content-Length and Transfer-Encoding", error_status_hint=400
                )
        return event
