"""Run the reference LAS under uvicorn over mutual TLS: in a thread for tests, or as a process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from traffic_center.las.bron import EventSink, ReferenceLas
from traffic_center.las.config import LasConfig
from traffic_center.las.state import DossierCounters, NotificationInbox
from traffic_center.las.streams import DeliberateAbort
from traffic_center.observability.expected_aborts import quiet_expected_aborts
from traffic_center.server.tls import TLSScopeH11Protocol, ssl_context_from_config


class _LasUvicorn(uvicorn.Server):
    """uvicorn, leaving signals to its owner and saying when it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def uvicorn_config(config: LasConfig, app: Any) -> uvicorn.Config:
    """Like the TC's vendor listener: client certificate required, verified against ``ca``."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=TLSScopeH11Protocol,
        ssl_certfile=str(config.cert),
        ssl_keyfile=str(config.key),
        ssl_ca_certs=str(config.ca),
        ssl_context_factory=ssl_context_from_config,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=config.shutdown_grace_seconds,
    )


class LasServer:
    """One reference LAS endpoint.

    In a test: ``with LasServer(config).start() as las: …`` (a thread with its own loop);
    as a process: ``await LasServer(config).run(handle_signals=True)``.
    """

    def __init__(
        self,
        config: LasConfig,
        *,
        on_event: EventSink | None = None,
        tc_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._emit: EventSink = on_event or (lambda event: None)
        self.las = ReferenceLas(config, on_event=self._emit, tc_transport=tc_transport)
        self._server = _LasUvicorn(uvicorn_config(config, self.las.app), self._listening)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        quiet_expected_aborts(DeliberateAbort)

    # --- what callers watch -------------------------------------------------------------------

    @property
    def counters(self) -> DossierCounters:
        return self.las.counters

    @property
    def notifications(self) -> NotificationInbox:
        return self.las.notifications

    @property
    def started(self) -> bool:
        return self._server.started

    @property
    def port(self) -> int:
        sockets = [s for server in self._server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The endpoint URL to register at the TC, e.g. https://127.0.0.1:8444/oso."""
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"https://{host}:{self.port}{self.config.path}"

    def _listening(self) -> None:
        self._emit({"event": "listening", "url": self.url})

    # --- in this loop -------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False) -> None:
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_exit)
        await self._server.serve()

    def request_exit(self) -> None:
        """Stop accepting; running answers get ``shutdown_grace_seconds`` to finish."""
        self._server.should_exit = True

    # --- in a thread --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LasServer:
        """Serve from a thread with its own event loop; return once it accepts connections."""
        self._thread = threading.Thread(target=self._run_in_thread, daemon=True, name="las")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the LAS did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the LAS did not start in time")
            time.sleep(0.01)
        return self

    def _run_in_thread(self) -> None:
        try:
            asyncio.run(self.run())
        except BaseException as exc:  # uvicorn exits via SystemExit; start() reports it
            self._error = exc

    def stop(self, timeout: float = 15.0) -> None:
        self.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def __enter__(self) -> LasServer:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
