"""uvicorn servers embedded in a program of ours: several in one event loop, or one in a thread.

Used by the Traffic Center (its two listeners), the reference LAS and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn leaving signal handling to its owner, and saying when it listens."""

    def __init__(
        self, config: uvicorn.Config, *, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def request_exit(self) -> None:
        self.should_exit = True

    @property
    def bound_port(self) -> int:
        """The port it listens on (the one asked for, or the one port 0 got)."""
        sockets = [s for server in self.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])


def exit_on_signals(request_exit: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask for a graceful exit (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_exit)


class Serving(Protocol):
    @property
    def started(self) -> bool: ...

    async def serve(self) -> None: ...

    def request_exit(self) -> None: ...


class ServerThread:
    """Serves from a thread with its own event loop; ``start`` returns once it listens."""

    def __init__(
        self,
        server: Serving,
        *,
        name: str = "server",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.server = server
        self._loop_factory = loop_factory
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self.server.serve())
        except BaseException as exc:  # uvicorn exits via SystemExit; start() reports it
            self._error = exc

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.01)

    def stop(self, timeout: float = 40) -> None:
        self.server.request_exit()
        self._thread.join(timeout=timeout)
