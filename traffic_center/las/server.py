"""Run the reference LAS under uvicorn over mutual TLS: in a thread for tests, or as a process."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
import uvicorn

from traffic_center.las.bron import EventSink, ReferenceLas
from traffic_center.las.config import LasConfig
from traffic_center.las.pupils import TEST_SCHEME_KEY, Roster
from traffic_center.las.state import DossierCounters, NotificationInbox, SwvCases
from traffic_center.las.streams import DeliberateAbort
from traffic_center.observability.expected_aborts import quiet_expected_aborts
from traffic_center.server.embedded import QuietServer, ServerThread, exit_on_signals
from traffic_center.server.tls import mtls_config


def uvicorn_config(config: LasConfig, app: Any) -> uvicorn.Config:
    """Like the TC's vendor listener: client certificate required, verified against ``ca``."""
    return mtls_config(
        app,
        host=config.host,
        port=config.port,
        certfile=config.cert,
        keyfile=config.key,
        client_ca=config.ca,
        graceful_seconds=config.shutdown_grace_seconds,
    )


class LasServer:
    """One reference LAS endpoint.

    In a test: ``with LasServer(config).start() as las: …`` (a thread with its own loop);
    as a process: ``await LasServer(config).serve(handle_signals=True)``.
    """

    def __init__(
        self,
        config: LasConfig,
        *,
        on_event: EventSink | None = None,
        tc_transport: httpx.AsyncBaseTransport | None = None,
        pupils: Roster | None = None,
    ) -> None:
        self.config = config
        self._emit: EventSink = on_event or (lambda event: None)
        self.las = ReferenceLas(
            config, on_event=self._emit, tc_transport=tc_transport, pupils=pupils
        )
        self._server = QuietServer(uvicorn_config(config, self.las.app), on_started=self._listening)
        self._thread: ServerThread | None = None
        quiet_expected_aborts(DeliberateAbort)

    # --- what callers watch -------------------------------------------------------------------

    @property
    def counters(self) -> DossierCounters:
        return self.las.counters

    @property
    def notifications(self) -> NotificationInbox:
        return self.las.notifications

    @property
    def swv_cases(self) -> SwvCases:
        """The SWV flow, this LAS as the school: koppelsleutel → pupil, and feedback received."""
        return self.las.swv_cases

    @property
    def pupils(self) -> Roster:
        """The pupils this LAS holds; a test enrolls its own: ``pupils.enroll(pgn, "gereed")``."""
        return self.las.pupils

    @property
    def started(self) -> bool:
        return self._server.started

    @property
    def port(self) -> int:
        return self._server.bound_port

    @property
    def url(self) -> str:
        """The endpoint URL to register at the TC, e.g. https://127.0.0.1:8444/oso."""
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"https://{host}:{self.port}{self.config.path}"

    def _listening(self) -> None:
        # Say which scheme key, never the key: "test" is the public one, for test school 00YY.
        scheme = "test" if self.config.scheme_key == TEST_SCHEME_KEY else "configured"
        self._emit({"event": "listening", "url": self.url, "scheme_key": scheme})

    # --- in this loop -------------------------------------------------------------------------

    async def serve(self, *, handle_signals: bool = False) -> None:
        if handle_signals:
            exit_on_signals(self.request_exit)
        await self._server.serve()

    def request_exit(self) -> None:
        """Stop accepting; running answers get ``shutdown_grace_seconds`` to finish."""
        self._server.request_exit()

    # --- in a thread --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LasServer:
        """Serve from a thread with its own event loop; return once it accepts connections."""
        self._thread = ServerThread(self, name="las")
        self._thread.start(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is not None:
            self._thread.stop(timeout)
        else:
            self.request_exit()

    def __enter__(self) -> LasServer:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
