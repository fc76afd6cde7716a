"""The bodies of dossier answers: streamed responses that report how they ended.

:class:`DossierStream` tells whether a dossier reached its end or was aborted; the generators
here produce the bytes, from a file, a generated dossier, slowly, or broken off on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from traffic_center.domain.las_contract import DOSSIER_MEDIA_TYPE
from traffic_center.las.dossier import CHUNK_BYTES, GeneratedDossier

StreamEnd = Callable[[bool, int], None]  # (completed, bytes handed to the server)


class DeliberateAbort(Exception):
    """Raised inside a dossier stream (scenario afbreken) so the server drops the connection."""


class DossierStream(StreamingResponse):
    """A streamed dossier that reports how it ended: completed, or aborted.

    When the client goes away Starlette cancels the sending task, which may leave the body
    generator suspended at a ``yield``; it is closed here, at once, rather than whenever the
    garbage collector finds it, so the counters (and open files) follow the connection.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        headers: Mapping[str, str],
        on_end: StreamEnd,
    ) -> None:
        self._tracked = _tracked(body, on_end)
        super().__init__(self._tracked, headers=headers, media_type=DOSSIER_MEDIA_TYPE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._tracked.aclose()


async def _tracked(
    body: AsyncGenerator[bytes, None], on_end: StreamEnd
) -> AsyncGenerator[bytes, None]:
    sent, completed = 0, False
    try:
        async with contextlib.aclosing(body):
            async for chunk in body:
                yield chunk
                sent += len(chunk)  # counted once the server asked for the next chunk
                # Sending does not suspend unless the socket buffer is full, and a lost
                # connection never fills it: without this the loop would never run the
                # disconnect, and a generated gigabyte would "complete" into a dead socket.
                await asyncio.sleep(0)
        completed = True
    finally:
        on_end(completed, sent)


async def chunks_of(
    chunks: Iterator[bytes], *, interval: float = 0.0
) -> AsyncGenerator[bytes, None]:
    for chunk in chunks:
        yield chunk
        if interval:
            await asyncio.sleep(interval)


async def broken_off(dossier: GeneratedDossier) -> AsyncGenerator[bytes, None]:
    """About half of what the Content-Length promised, then an error: the server drops the
    connection mid-body, which is what a crashing bron looks like to the TC."""
    for chunk in dossier.chunks(limit=dossier.size // 2):
        yield chunk
    raise DeliberateAbort("00YY-afbreken: the connection is dropped on purpose")


async def file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
