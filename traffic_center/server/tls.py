"""TLS for the vendor listener: the server context, and the peer certificate in the ASGI scope."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config

from traffic_center.pki.chain import load_own_certificate
from traffic_center.server.limits import (
    BoundedH11Protocol,
    ConnectionLimits,
    ListenerConfig,
    ReportingSSLObject,
)

# Mozilla "intermediate" profile, TLS 1.2 part restricted to ECDHE with AEAD ciphers
# (no CBC, no RSA key exchange). TLS 1.3 suites are fixed by OpenSSL and all AEAD.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
# TLS 1.3 session tickets the server issues per handshake (see server_ssl_context).
SESSION_TICKETS = 1


def server_ssl_context(*, certfile: str, keyfile: str, client_ca: str) -> ssl.SSLContext:
    """TLS ≥ 1.2, client certificate required and verified against the TC's CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    load_own_certificate(context, cert=certfile, key=keyfile, issuers=client_ca)
    context.load_verify_locations(cafile=client_ca)
    # OpenSSL verifies the client certificate for the "ssl_client" purpose, so a
    # serverAuth-only certificate fails the handshake; the app checks the EKU again.
    context.verify_mode = ssl.CERT_REQUIRED
    # TLS 1.3 session tickets: one per handshake, not OpenSSL's two. Each costs the server
    # about 0.27 ms here, made before the handshake is done, so before the first request is
    # read (issue 14). A client that resumes uses a ticket once and gets a fresh one with
    # each resumed connection, so one suffices for reconnecting one connection at a time.
    # Resuming skips no check of ours: the inventory, revocation and expiry are read for
    # every request (broker/authenticator.py).
    context.num_tickets = SESSION_TICKETS
    context.sslobject_class = ReportingSSLObject  # refused handshakes are counted
    return context


def ssl_context_from_config(
    config: Config, _default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: a module-level function so workers can pickle it."""
    assert config.ssl_certfile
    assert config.ssl_keyfile
    assert config.ssl_ca_certs
    return server_ssl_context(
        certfile=str(config.ssl_certfile),
        keyfile=str(config.ssl_keyfile),
        client_ca=str(config.ssl_ca_certs),
    )


def mtls_config(
    app: Any,
    *,
    host: str,
    port: int,
    certfile: Path,
    keyfile: Path,
    client_ca: Path,
    graceful_seconds: int,
    limits: ConnectionLimits | None = None,
    keep_alive_seconds: float = 5.0,
    httptools: bool | None = None,
    **extra: Any,
) -> ListenerConfig:
    """uvicorn behind mutual TLS: the peer certificate required and put in the ASGI scope;
    httptools parses when installed (``httptools`` None), else h11."""
    return ListenerConfig(
        app,
        limits=limits or ConnectionLimits(),
        timeout_keep_alive=keep_alive_seconds,
        host=host,
        port=port,
        http=vendor_protocol(httptools=httptools),
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_ca_certs=str(client_ca),
        ssl_context_factory=ssl_context_from_config,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # uvicorn's X-Forwarded-For/-Proto rewriting of the scope's client and scheme: nothing
        # here reads either (a proxy's word comes as RFC 9440 Client-Cert, believed only from
        # a proxy certificate: api/identity.py), so it was one more layer per request.
        proxy_headers=False,
        timeout_graceful_shutdown=graceful_seconds,
        **extra,
    )


class _TLSScopeApp:
    """Adds the ASGI TLS extension (client_cert_chain as PEM) to every request's scope."""

    def __init__(self, app: Any, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        await self.app(scope, receive, send)


# How long a closing TLS connection may wait for the peer's close_notify during shutdown.
CLOSE_NOTIFY_GRACE_SECONDS = 0.25


def vendor_protocol(*, httptools: bool | None = None) -> type[asyncio.Protocol]:
    """The vendor listener's HTTP/1.1 protocol, with our limits and TLS scope: uvicorn's
    httptools one when installed (``httptools`` None; a dependency), else its h11 one."""
    if httptools if httptools is not None else find_spec("httptools") is not None:
        from traffic_center.server.httptools_protocol import TLSScopeHttpToolsProtocol

        return TLSScopeHttpToolsProtocol
    return TLSScopeH11Protocol


class TLSScope(asyncio.Protocol):
    """Reads the verified peer certificate once per connection into the ASGI scope, and
    aborts idle TLS connections at shutdown; a mixin, before uvicorn's h11 or httptools
    protocol (uvicorn does not fill the ASGI ``tls`` scope extension: uvicorn PRs 3132/3133).
    """

    if TYPE_CHECKING:  # uvicorn's protocol has these
        app: Any
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        cycle: Any
        peer_der: bytes | None  # BoundedConnection's, read once per connection

    def shutdown(self) -> None:
        """Graceful shutdown that a TLS peer cannot stall.

        Closing a TLS transport waits for the peer's close_notify, and an idle keep-alive
        client (an httpx pool, say) never reads, so uvicorn would wait out its whole graceful
        timeout. Once the connection has no response in progress, it is aborted instead.
        """
        super().shutdown()  # type: ignore[misc]
        self._abort_when_idle()

    def _abort_when_idle(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            self.loop.call_later(CLOSE_NOTIFY_GRACE_SECONDS, self.transport.abort)
        else:  # a response still streaming: let it finish, then look again
            self.loop.call_later(CLOSE_NOTIFY_GRACE_SECONDS, self._abort_when_idle)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = self.peer_der
        cipher = ssl_object.cipher()
        tls = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": ssl_object.version(),
            "cipher_suite": cipher[0] if cipher else None,
            "server_cert": None,
        }
        self.app = _TLSScopeApp(self.app, tls)


class TLSScopeH11Protocol(TLSScope, BoundedH11Protocol):
    """The bounded h11 protocol with the TLS scope: the fallback without httptools."""
