"""The mTLS client the Traffic Center uses to call LAS endpoints."""

from __future__ import annotations

import http.cookiejar
import json
import ssl
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx

from traffic_center.domain.errors import (
    UpstreamInvalidAnswer,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from traffic_center.relay.aiohttp_transport import AiohttpTransport
from traffic_center.relay.headers import clear_default_headers
from traffic_center.relay.limits import MAX_ANSWER_BYTES, RelayLimits
from traffic_center.relay.slots import RelaySlot, RelaySlots, Share, SlotUsage


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep no cookie and send none: the relay is stateless toward a LAS."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def upstream_ssl_context(*, cert: Path, key: Path, trust: Path) -> ssl.SSLContext:
    """Our relay certificate as client, the LAS's server certificate checked against ``trust``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class UpstreamClient:
    """One pooled httpx client per node, with its relay slots and error translation.

    Its transport is aiohttp's (relay/aiohttp_transport.py) unless a test injects one.
    """

    def __init__(
        self,
        limits: RelayLimits,
        *,
        ssl_context: ssl.SSLContext | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "oso-traffic-center",
        on_usage: Callable[[SlotUsage], None] = lambda usage: None,
        on_refused: Callable[[Share], None] = lambda share: None,
    ) -> None:
        self.limits = limits
        # Told the slots' usage whenever it changes, and each refusal (the operators' metrics).
        self.slots = RelaySlots(
            total=limits.max_in_flight,
            per_doel_school=limits.max_per_doel_school,
            per_bron_endpoint=limits.max_per_bron_endpoint,
            on_change=on_usage,
            on_refused=on_refused,
        )
        if transport is None:
            transport = AiohttpTransport(
                ssl_context=ssl_context, max_connections=limits.max_in_flight
            )
        # The transport does the pooling and TLS; httpx gives it each request's timeouts.
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                connect=limits.connect_timeout_seconds,
                read=limits.read_timeout_seconds,
                write=limits.read_timeout_seconds,
                pool=limits.connect_timeout_seconds,
            ),
            follow_redirects=False,  # a LAS answers; it does not send us elsewhere
            trust_env=False,  # no proxy or netrc from the environment
            # One client serves every doel's relays: a cookie a bron set on one relay, sent
            # back on the next, would let the bron link transfers of different schools.
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
        )
        clear_default_headers(self._client, user_agent)
        # Dossiers are hashed here, beside the event loop (relay/metering.py); one thread keeps
        # each dossier's batches in order. Its thread starts with the first dossier.
        self.hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dossier-sha256")

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    async def aclose(self) -> None:
        await self._client.aclose()
        self.hashing.shutdown(wait=False)

    def acquire_slot(self, *, doel_school: str, bron_endpoint: str) -> RelaySlot:
        """Take one of the node's relay slots within the doel school's and the bron endpoint's
        fair share; refuse at once (RelayBusy) rather than queue when one is full.

        Not a context manager: a streamed dossier holds its slot until its last byte, long
        after the route function returned.
        """
        return self.slots.acquire(doel_school=doel_school, bron_endpoint=bron_endpoint)

    def release_slot(self, slot: RelaySlot) -> None:
        self.slots.release(slot)

    async def open(
        self, url: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> httpx.Response:
        """POST and return as soon as the answer's headers are in; the body is not read yet."""
        request = self._client.build_request(
            "POST",
            url,
            content=json.dumps(body).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{_where(url)}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            # Connection refused, DNS, TLS handshake failures, a peer that hung up.
            raise UpstreamUnreachable(f"{_where(url)}: {type(exc).__name__}") from exc

    @staticmethod
    async def read_answer(response: httpx.Response) -> bytes:
        """A small non-dossier answer, read to at most MAX_ANSWER_BYTES."""
        received = bytearray()
        try:
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) > MAX_ANSWER_BYTES:
                    raise UpstreamInvalidAnswer("the LAS's answer is too long")
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("the LAS stopped answering") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnreachable(f"the LAS's answer broke off: {type(exc).__name__}") from exc
        return bytes(received)

    @staticmethod
    async def release(response: httpx.Response) -> None:
        """Close the answer and give its connection back, even while being cancelled."""
        with anyio.CancelScope(shield=True):
            await response.aclose()


def _where(url: str) -> str:
    """The endpoint's origin for messages: never a query string."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or 443}"
