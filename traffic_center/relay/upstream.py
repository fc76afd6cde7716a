"""The mTLS client the Traffic Center uses to call LAS endpoints."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from traffic_center.domain.errors import (
    UpstreamInvalidAnswer,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from traffic_center.pki.chain import load_own_certificate
from traffic_center.relay.aiohttp_transport import AiohttpTransport, MalformedAnswerHead
from traffic_center.relay.headers import default_request_headers
from traffic_center.relay.limits import MAX_ANSWER_BYTES, RelayLimits
from traffic_center.relay.slots import RelaySlot, RelaySlots, Share, SlotUsage

if TYPE_CHECKING:
    from traffic_center.observability.metrics import StaleFound

# Endpoint URLs parsed once each: a pure function of the registry's string (a changed URL is
# another string), so nothing about an endpoint outlives a change.
_PARSED_URLS = 1024


def upstream_ssl_context(*, cert: Path, key: Path, trust: Path) -> ssl.SSLContext:
    """Our relay certificate as client, the LAS's server certificate checked against ``trust``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_own_certificate(context, cert=cert, key=key, issuers=trust)
    return context


class UpstreamClient:
    """One pooled transport per node, with its relay slots and error translation.

    The relay speaks httpx (``httpx.Request``, ``httpx.Response``, httpx's exceptions) to an
    ``httpx.AsyncBaseTransport``: aiohttp's (relay/aiohttp_transport.py) unless a test
    injects one. Requests go to the transport itself, not through ``httpx.AsyncClient``: the
    client's per-request work is redirects, auth, event hooks, proxies from the environment
    and a cookie jar, none of which the relay may use, and it cost ~0.2 ms of CPU per relay,
    the cookie jar's parsing of every answer's headers a third of that (issue 14). So no
    cookie is ever kept or sent: there is no jar (and aiohttp's is a dummy one).
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
        on_stale: Callable[[StaleFound], None] = lambda found: None,
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
                ssl_context=ssl_context, max_connections=limits.max_in_flight, on_stale=on_stale
            )
        # The transport does the pooling and TLS; each request carries its timeouts, as
        # httpx's client would hand them over.
        self._transport = transport
        self._timeouts = httpx.Timeout(
            connect=limits.connect_timeout_seconds,
            read=limits.read_timeout_seconds,
            write=limits.read_timeout_seconds,
            pool=limits.connect_timeout_seconds,
        ).as_dict()
        self._default_headers = default_request_headers(user_agent)
        self._url = functools.lru_cache(maxsize=_PARSED_URLS)(httpx.URL)
        # Dossiers are hashed here, beside the event loop (relay/metering.py); one thread keeps
        # each dossier's batches in order. Its thread starts with the first dossier.
        self.hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dossier-sha256")

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    async def aclose(self) -> None:
        await self._transport.aclose()
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
        # The defaults first; a header of the request's own replaces one of the same name in
        # any case (httpx's Headers.update), as httpx's client merged them.
        merged = httpx.Headers(self._default_headers)
        merged.update({**headers, "Content-Type": "application/json"})
        request = httpx.Request(
            "POST",
            self._url(url),
            content=json.dumps(body).encode(),
            headers=merged,
            extensions={"timeout": self._timeouts},  # a request's own: httpx keeps it
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{_where(url)}: {type(exc).__name__}") from exc
        except MalformedAnswerHead as exc:
            raise UpstreamInvalidAnswer(
                "the LAS's answer head is not valid HTTP/1.1 (a line or headers too long, "
                "both Content-Length and Transfer-Encoding, or not HTTP)"
            ) from exc
        except httpx.TransportError as exc:
            # Connection refused, DNS, TLS handshake failures, a peer that hung up.
            raise UpstreamUnreachable(f"{_where(url)}: {type(exc).__name__}") from exc
        response.request = request
        return response

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
