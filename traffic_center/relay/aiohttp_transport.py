"""httpx's client API over aiohttp's client: the relay's upstream transport.

httpx's own transport reads TLS through anyio's memory BIO in 16 KiB pieces; aiohttp runs on
asyncio's native TLS transport with the llhttp parser and its own keep-alive pool, and its
``readany`` hands over everything buffered at once (about three times httpx's throughput
on a 50 MB dossier, issue 14). The relay keeps talking httpx (``aiter_raw``, ``aclose``,
its exceptions): this module translates at the seam, and nothing else imports aiohttp.

What crosses the seam, both ways, is exactly what httpx carries: no header of aiohttp's own
(``skip_auto_headers``), no decompression, redirects, cookies or proxies from the
environment. Every aiohttp failure becomes the httpx exception httpx's transport raises for
the same event (``_httpx_error``), so the relay's mapping to its codes stays as it was.

Timeouts follow the request's ``httpx.Timeout``: pool and connect (TLS handshake included),
then ``sock_read`` per wait for the bron's next bytes, answer head and body alike, as httpx's
read timeout. aiohttp stops that clock while it holds reading back because we have not taken
the buffered bytes (a slow doel), so only the bron's silence counts. The body's reads also
get a clock of our own: aiohttp's C parser (3.13, 3.14) leaves a body reader waiting for
ever, its clock stopped, after it rejects the framing mid-body (a bad chunk size), and such
a wait must end as a read timeout, not hold a relay slot. No write timeout: a request body
is a few hundred bytes of JSON, which the socket takes without waiting.
"""

from __future__ import annotations

import asyncio
import functools
import select
import ssl
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

    from traffic_center.observability.metrics import StaleFound

# Our own bound on the bron's answer head (RFC 9112 §2.3: a server may refuse what it finds
# too long; so may we). A LAS answer has a dozen headers of a few hundred bytes; these bound
# what a hostile bron can make a connection hold before the first body byte.
MAX_HEADER_LINE_BYTES = 8 * 1024
MAX_HEADERS = 64
# Idle keep-alive connections are dropped after this: a second before the 5 s after which
# common servers (uvicorn, Apache, our reference LAS) close an idle connection, so a relay never
# sends its request on a connection the bron is closing (a POST aiohttp does not retry).
KEEPALIVE_SECONDS = 4.0
# aiohttp's read buffer: it stops reading the bron's socket above twice this, and ``readany``
# returns up to about that much per call. At 64 KiB a 50 MB dossier paused and resumed the
# socket ~400 times and crossed the relay's Python layers in ~100 KiB pieces; 256 KiB took
# ~8 % of the relay's CPU per MB away (issue 14). What one relay holds stays bounded: 512 KiB.
READ_BUFFER_BYTES = 2**18
# Headers aiohttp would otherwise add when a request lacks them; httpx's request is complete.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session, made on first use (it needs the running loop) and pooled."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        on_stale: Callable[[StaleFound], None] = lambda found: None,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Told each kept-alive connection a LAS had closed: seen before use and dropped, or
        # found under a request, which then went once more (the operators' metric).
        self._on_stale = on_stale

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open_session()
        timeout = _timeouts(request)
        content = await request.aread()

        async def send() -> aiohttp.ClientResponse:
            _HANDED_OUT.set(None)
            return await session.request(
                request.method,
                str(request.url),
                data=content,
                headers=list(request.headers.multi_items()),
                timeout=timeout,
                allow_redirects=False,
            )

        try:
            try:
                answer = await send()
            except _CLOSED_UNDER_IT:
                handed = _HANDED_OUT.get()
                if handed is None or handed.requests == 1 or handed.answer_bytes:
                    # A new connection's failure, or a close after the LAS began its answer:
                    # either is the LAS's answer.
                    raise
                # A kept-alive connection the LAS closed as the request crossed its close on
                # the wire (_LookingConnector): once more, on another connection.
                self._on_stale("under_request")
                answer = await send()
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
        # From the answer's last byte the connection is idle (aiohttp pools it then): what
        # its LAS sends from there on is out of turn (_TurnKeepingHandler).
        handler = _HANDED_OUT.get()
        if handler is not None:
            answer.content.on_eof(handler.answered)
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=_AnswerStream(answer, request, read_timeout=timeout.sock_read),
            extensions={
                "http_version": f"HTTP/{answer.version.major}.{answer.version.minor}".encode()
                if answer.version is not None
                else b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode("latin-1", "replace"),
            },
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = _LookingConnector(
                on_stale=self._on_stale,
                ssl=self._ssl,
                limit=self._max_connections,
                limit_per_host=0,  # the relay slots already give each bron endpoint its share
                keepalive_timeout=KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # a LAS cannot set state in our client
                skip_auto_headers=_AUTO_HEADERS,
                auto_decompress=False,  # the dossier's bytes and SHA-256 as the bron sent them
                trust_env=False,  # no proxy or netrc from the environment
                read_bufsize=READ_BUFFER_BYTES,
                max_line_size=MAX_HEADER_LINE_BYTES,
                max_field_size=MAX_HEADER_LINE_BYTES,
                max_headers=MAX_HEADERS,
            )
        return self._session


class _TurnKeepingHandler(ResponseHandler):
    """aiohttp's protocol for one connection to a LAS, keeping count of whose turn it is.

    HTTP/1.1 lets a server speak only to answer a request. What a LAS sends on a kept-alive
    connection between the end of one answer and the next request (a second answer, stray
    bytes, the start of an answer nobody asked for) would otherwise wait in aiohttp's parser
    and be read as the answer to the next request on that connection: another school's
    documentRequest, perhaps, since one LAS host serves many schools and the pool is per
    host. Such a connection is not used again (``_LookingConnector``)."""

    # Requests handed this connection so far: after the first it is a kept-alive one.
    requests: int = 0
    # A request was handed this connection and its answer has not ended.
    awaiting: bool = False
    # Bytes of that answer so far: a resend is only for a request no answer had begun for.
    answer_bytes: int = 0
    # Bytes came while no request was waiting.
    spoke_out_of_turn: bool = False

    def handed_out(self) -> None:
        self.requests += 1
        self.awaiting, self.answer_bytes = True, 0

    def answered(self) -> None:
        """The answer's last byte is in (its body's end of file)."""
        self.awaiting = False

    def data_received(self, data: bytes) -> None:
        if self.awaiting:
            self.answer_bytes += len(data)
        elif data:
            self.spoke_out_of_turn = True
        super().data_received(data)


# The connection the request being sent was handed, in the request's own task (set by
# _LookingConnector.connect: aiohttp passes nothing back from connect()), and the failures
# that mean a kept-alive one was closed under the request.
_HANDED_OUT: ContextVar[_TurnKeepingHandler | None] = ContextVar(
    "upstream_connection", default=None
)
_CLOSED_UNDER_IT = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class _LookingConnector(aiohttp.TCPConnector):
    """aiohttp's pool, but a kept-alive connection is looked at before it is used again.

    A LAS closes an idle connection when its keep-alive runs out, and may do so just as the
    relay takes that connection for the next request. aiohttp hands it out as long as its
    event loop has not read the close, and a busy loop (32 relays at once, a pause for
    garbage collection) reads it late: the POST then goes out on a dead connection and the
    doel gets a 502 (seen under load; tests/test_upstream_transport.py makes it happen every
    time). Sending a request again is the last resort (a LAS may have read it), so the
    connection is looked at first, as httpx's own pool did: on an idle HTTP/1.1 connection
    the server has nothing to say, so anything waiting in the socket (its close, a reset, a
    TLS alert) means it is not used again; the next kept-alive one is looked at, or a new one
    made. One poll of a socket per
    reused connection. The close can still cross the request on the wire; then (and only on
    a kept-alive connection, before any of the answer) the request is sent once more, on
    another connection (``AiohttpTransport.handle_async_request``), as curl and Go's client
    do: a LAS that closes an idle connection has not acted on a request it never answered,
    and what the relay sends (a documentRequest, a notification) is safe to receive twice in
    the rare case one did. A connection its LAS sent bytes on while idle is not used again
    either (``_TurnKeepingHandler``): those bytes were read already, so no poll sees them."""

    def __init__(self, *, on_stale: Callable[[StaleFound], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_stale = on_stale
        # Each connection's protocol keeps count of whose turn it is (aiohttp makes every
        # connection's protocol with this factory).
        # (typeshed's partial is invariant in what it makes: a subclass's does not fit.)
        self._factory = functools.partial(_TurnKeepingHandler, loop=self._loop)  # type: ignore[assignment]

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> Connection:
        while True:
            connection = await super().connect(req, traces, timeout)
            protocol = connection.protocol
            assert isinstance(protocol, _TurnKeepingHandler)
            if not protocol.requests:
                # A new one is not looked at: a server may well send TLS session tickets
                # just after the handshake, with nothing wrong.
                return _handed(connection, protocol)
            if protocol.spoke_out_of_turn or protocol.should_close:
                # Bytes nobody asked for, read already: never taken for the next answer.
                connection.close()
                self._on_stale("out_of_turn")
                continue
            if not _peer_has_spoken(protocol.transport):
                return _handed(connection, protocol)
            connection.close()  # dropped; the next pass takes another or makes a new one
            self._on_stale("before_use")


def _handed(connection: Connection, protocol: _TurnKeepingHandler) -> Connection:
    protocol.handed_out()
    _HANDED_OUT.set(protocol)
    return connection


def _peer_has_spoken(transport: asyncio.BaseTransport | None) -> bool:
    """Whether an idle connection's socket has something to read: the server's close, a
    reset or any bytes, none of which an idle HTTP/1.1 server sends."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        if not hasattr(select, "poll"):  # Windows: select() has no descriptor ceiling there
            return bool(select.select([sock], [], [], 0)[0])
        # poll(), not select(): a busy node's descriptors run past select()'s 1,024.
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed under us
        return True


def _timeouts(request: httpx.Request) -> aiohttp.ClientTimeout:
    """The request's httpx timeouts in aiohttp's terms; ``None`` waits for ever in both."""
    given: dict[str, float | None] = request.extensions.get("timeout", {})
    return _client_timeout(given.get("connect"), given.get("pool"), given.get("read"))


# Every relay asks with the node's same timeouts: made once (an attrs object, immutable).
@functools.lru_cache(maxsize=16)
def _client_timeout(
    connect: float | None, pool: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        # aiohttp's ``connect`` covers waiting for a pooled connection and making one;
        # ``sock_connect`` the TCP connect and TLS handshake alone, httpx's connect timeout.
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=read,
    )


class _AnswerStream(httpx.AsyncByteStream):
    """The answer's body as it arrives; its connection goes back to the pool only when read
    to the end, else it is closed (half-read bytes must not reach the next request)."""

    def __init__(
        self, answer: aiohttp.ClientResponse, request: httpx.Request, *, read_timeout: float | None
    ) -> None:
        self._answer = answer
        self._request = request
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Everything buffered at once (up to about twice READ_BUFFER_BYTES), as it came: what
        # is buffered already comes without a timer, only a real wait gets one.
        content = self._answer.content
        try:
            while chunk := content.read_nowait() or await self._next_arrival(content):
                yield chunk
        except TimeoutError as exc:
            # Ours or aiohttp's (SocketTimeoutError is both a ClientError and a TimeoutError).
            raise httpx.ReadTimeout(type(exc).__name__, request=self._request) from exc
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, self._request) from exc

    async def _next_arrival(self, content: aiohttp.StreamReader) -> bytes:
        """The bytes that arrive next; b"" at the end of the body."""
        if content.at_eof():
            return b""
        async with asyncio.timeout(self._read_timeout):
            return await content.readany()

    async def aclose(self) -> None:
        # Synchronous in aiohttp: nothing to await, so a cancelled relay cannot leak it.
        if self._answer.content.at_eof():
            self._answer.release()
        else:
            self._answer.close()


class MalformedAnswerHead(httpx.RemoteProtocolError):
    """An answer head llhttp would not parse (both Content-Length and Transfer-Encoding,
    a line or headers past the limits, not HTTP at all): the LAS reached and answered, and
    its answer is what is wrong, not the connection (``UpstreamInvalidAnswer``)."""


# Most specific first: the httpx exception httpx's own transport raises for the same event.
_ERROR_MAP: tuple[tuple[type[aiohttp.ClientError], type[httpx.TransportError]], ...] = (
    # No connection (pool wait, TCP connect, TLS handshake) within the connect timeout.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    # The bron silent for longer than the read timeout, before or within its answer.
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    # DNS, refused, unreachable, the TLS handshake (certificate, protocol) failed.
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    # Closed before a complete answer head, or mid-body (bad chunked framing, short body).
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    # An answer head llhttp would not parse: too long, too many headers, malformed.
    (aiohttp.ClientResponseError, MalformedAnswerHead),
    # Reset or broken socket while reading.
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
)


def _httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    # aiohttp's message may quote the bytes it choked on; ours names only the kind of failure.
    message = type(exc).__name__
    for aiohttp_class, httpx_class in _ERROR_MAP:
        if isinstance(exc, aiohttp_class):
            return httpx_class(message, request=request)
    return httpx.TransportError(message, request=request)
