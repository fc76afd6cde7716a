"""Run the vendor listener and the ops listener together, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from traffic_center.api.app import create_app, utc_now
from traffic_center.api.ops import Lifecycle, create_ops_app
from traffic_center.server.embedded import QuietServer, exit_on_signals
from traffic_center.server.limits import ConnectionLimits, TcpConfig, event_loop_factory
from traffic_center.server.tls import mtls_config
from traffic_center.settings import Settings


def vendor_config(settings: Settings, app: Any, **extra: Any) -> uvicorn.Config:
    """The mTLS listener's uvicorn config; ``app`` may be an import string for workers."""
    return mtls_config(
        app,
        host=settings.host,
        port=settings.port,
        certfile=settings.server_cert_path,
        keyfile=settings.server_key_path,
        client_ca=settings.client_ca_path,
        graceful_seconds=settings.drain_seconds,
        limits=connection_limits(settings),
        keep_alive_seconds=settings.keep_alive_timeout_seconds,
        uvloop=settings.event_loop == "uvloop",  # each worker's loop (ListenerConfig)
        **extra,
    )


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        handshake_seconds=settings.tls_handshake_timeout_seconds,
        header_seconds=settings.header_timeout_seconds,
        body_seconds=settings.body_timeout_seconds,
        max_connections=settings.max_connections,
        max_connections_per_certificate=settings.max_connections_per_certificate,
    )


def ops_config(settings: Settings, app: Any) -> uvicorn.Config:
    return TcpConfig(
        app,
        host=settings.ops_host,
        port=settings.ops_port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )


class TrafficCenterServer:
    """Both listeners in one event loop. Tests start it in a thread; `serve` in the main one."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        serve_vendor_api: bool = True,
        upstream_transport: httpx.AsyncBaseTransport | None = None,
        httptools: bool | None = None,
        uvloop: bool | None = None,
    ) -> None:
        """``httptools``: None parses with it when installed, False with h11; ``uvloop``: the
        vendor listener on uvloop's loop instead of asyncio's (server/uvloop_loop.py); None
        as the settings say (TC_EVENT_LOOP)."""
        self.settings = settings
        self.lifecycle = Lifecycle()
        registry = registry if registry is not None else CollectorRegistry()
        self.servers: list[QuietServer] = []
        if serve_vendor_api:
            app = create_app(
                settings,
                registry=registry,
                clock=clock,
                lifecycle=self.lifecycle,
                upstream_transport=upstream_transport,
            )
            self.vendor = QuietServer(vendor_config(settings, app, httptools=httptools))
            self.servers.append(self.vendor)
        # The TLS handshake bound lives in the event loop (server/limits.py).
        if uvloop is None:
            uvloop = settings.event_loop == "uvloop"
        self.loop_factory = event_loop_factory(connection_limits(settings), uvloop=uvloop)
        ops_app = create_ops_app(
            settings,
            registry=registry,
            lifecycle=self.lifecycle,
            clock=clock,
            own_store=not serve_vendor_api,  # else it reads through the vendor app's pool
        )
        self.ops = QuietServer(ops_config(settings, ops_app))
        self.servers.append(self.ops)

    def run(self) -> None:
        """Serve in this thread until SIGTERM or SIGINT, on the loop that bounds handshakes."""
        with asyncio.Runner(loop_factory=self.loop_factory) as runner:
            runner.run(self.serve(handle_signals=True))

    async def serve(self, *, handle_signals: bool = False) -> None:
        if handle_signals:
            exit_on_signals(self.request_exit)
        # Every listener's port first, before any app starts (uvicorn's bind: a port in use
        # logs one line and exits 3). Bound by each server as it started, the ops port found
        # in use stopped the start while the vendor app was still opening its store in a
        # worker thread: the loop closed under that thread, a traceback, and now and then a
        # segfault inside SQLite.
        listening = [server.config.bind_socket() for server in self.servers]
        await asyncio.gather(
            *(
                self._serve(server, sock)
                for server, sock in zip(self.servers, listening, strict=True)
            )
        )

    async def _serve(self, server: QuietServer, sock: socket.socket) -> None:
        await server.serve(sockets=[sock])
        if server is not self.ops:
            # The vendor listener has drained: now the ops listener may go too.
            self.ops.request_exit()

    def request_exit(self) -> None:
        """Drain: /readyz says 503 at once; the vendor listener stops accepting, lets requests
        in flight finish (up to the grace period), and only then the ops listener stops."""
        self.lifecycle.draining = True
        for server in self.servers:
            if server is not self.ops or len(self.servers) == 1:
                server.request_exit()

    @property
    def started(self) -> bool:
        return all(server.started for server in self.servers)
