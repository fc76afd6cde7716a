"""A raw TLS bron for answers no HTTP server library would send (broken framing, headers in
one-byte writes, a body shorter than announced...): each request answered by the scenario its
path's first part names."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MB = 1024 * 1024

Scenario = Callable[["Exchange"], Awaitable[bool]]  # True: the connection may be reused


@dataclass
class Exchange:
    """One request the bron received, and the means to answer it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    path: str
    headers: list[tuple[str, str]]
    flooded: int = 0  # header bytes a flood got out before the relay hung up

    async def send(self, data: bytes) -> None:
        # asyncio drops writes without a word once the peer has closed or reset: say so.
        if self.writer.is_closing() or self.reader.at_eof() or self.reader.exception():
            raise ConnectionResetError("the relay hung up")
        self.writer.write(data)
        await self.writer.drain()
        # drain() returns at once while nothing is queued, and the news of a reset comes in a
        # callback: let it run, or a loop of sends would spin on a dead connection.
        await asyncio.sleep(0)

    async def until_hung_up(self, seconds: float) -> None:
        """Wait until the relay closes the connection (or ``seconds`` pass)."""
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
            async with asyncio.timeout(seconds):
                await self.reader.read()


@dataclass
class HostileBron:
    """A TLS server that answers each request by the scenario named in its path's first part."""

    context: ssl.SSLContext
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    connections: int = 0
    hung_up: int = 0  # connections the other side closed
    requests: list[Exchange] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context, limit=1 * MB
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, scenario: str) -> str:
        return f"https://127.0.0.1:{self.port}/{scenario}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            self.hung_up += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = [(name, value.strip()) for name, value in (x.split(":", 1) for x in lines)]
        length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
        await reader.readexactly(length)
        path = request_line.split(" ")[1]
        exchange = Exchange(reader, writer, path, headers)
        self.requests.append(exchange)
        return await self.scenarios[path.split("/")[1]](exchange)
