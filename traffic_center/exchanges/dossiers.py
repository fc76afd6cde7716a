"""documentRequest through the Traffic Center: forward to the bron, stream back, record.

The broker has authorised the request (``AuthorisedDossier``); this module only acts on it.
The dossier is opaque bytes to us. It flows from the bron's socket to the doel's socket in
the chunks it arrives in; nothing holds it whole and nothing writes it anywhere. Its size and
SHA-256 are computed on the way and recorded with the exchange's final record.

What one relay may hold (docs/security.md): a slot within the doel school's and the bron
endpoint's fair share, for at most the relay's total deadline, and no write toward the doel
waits longer than the write timeout; past either the stream is cut and recorded as failed.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx
import structlog

from traffic_center.broker.service import AuthorisedDossier, DossierRequest
from traffic_center.domain.audit import (
    DOEL_DISCONNECTED,
    DOEL_STOPPED_READING,
    INTERNAL_ERROR,
    RELAY_DEADLINE_PASSED,
)
from traffic_center.domain.errors import DossierTooLarge, TransferAborted, UpstreamTimeout
from traffic_center.domain.identifiers import Overdrachtsoort
from traffic_center.domain.las_contract import DOSSIER_ACCEPT, DOSSIER_PATH, TRANSACTION_HEADER
from traffic_center.domain.results import ResultCode
from traffic_center.domain.rules import ParentRelease, required_release
from traffic_center.exchanges.base import RelayCollaborators, RelayExchange
from traffic_center.exchanges.bron_answers import accept_dossier_answer
from traffic_center.exchanges.runner import Exchange
from traffic_center.observability.logging import raised_at
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.headers import forwardable_answer_headers
from traffic_center.relay.metering import MeteredStream
from traffic_center.relay.slots import RelaySlot
from traffic_center.relay.upstream import UpstreamClient

log = structlog.get_logger("traffic_center.exchanges")

# The relay-bytes counter is told every megabyte or so, not every chunk: a long transfer still
# shows as throughput while it runs, and the hot loop takes the metric's lock rarely.
BYTES_PER_METRIC_UPDATE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelayedDossier:
    """A dossier on its way: the headers for the doel, and the body as it arrives.

    ``finish`` is idempotent and safe whether or not the body was ever iterated. The response
    awaits it once the doel has the last byte (or is gone), however it ended: it gives back
    the upstream connection and the slot and closes the exchange's record, off the doel's
    clock. ``write`` runs one send toward the doel: one the doel does not take within the
    write timeout (or the relay's deadline) aborts the transfer with TransferAborted.
    """

    headers: dict[str, str]
    body: AsyncIterator[bytes]
    finish: Callable[[], Awaitable[None]]
    write: Callable[[Awaitable[None]], Awaitable[None]]


class DossierRelay(RelayExchange):
    def __init__(self, collaborators: RelayCollaborators, *, require_release: bool) -> None:
        super().__init__(collaborators)
        self._require_release = require_release

    async def start(
        self,
        exchange: Exchange,
        authorised: AuthorisedDossier,
        request: DossierRequest,
        *,
        traceparent: str | None,
    ) -> RelayedDossier:
        """Everything up to the bron's answer headers; refusals raise before a byte is sent."""
        upstream = self._configured_upstream()
        # anyio's clock, read from the loop without its backend lookup (``_StreamBack`` reads
        # the same clock the same way).
        deadline = asyncio.get_running_loop().time() + upstream.limits.total_seconds
        slot = upstream.acquire_slot(
            doel_school=authorised.session.doel_brin,
            bron_endpoint=authorised.endpoint.routeringskenmerk,
        )
        try:
            await exchange.open()  # fail closed: the started record, or nothing is forwarded
            response = await _answered_by(
                deadline, self._forward(upstream, exchange, authorised, request, traceparent)
            )
        except BaseException:
            upstream.release_slot(slot)
            raise
        streaming = _StreamBack(
            self._metrics, upstream, response, exchange.hand_off(), slot=slot, deadline=deadline
        )
        headers = forwardable_answer_headers(response.headers)
        headers[TRANSACTION_HEADER] = exchange.entry.transaction_id
        return RelayedDossier(headers, streaming.body(), streaming.finish, streaming.write)

    async def _forward(
        self,
        upstream: UpstreamClient,
        exchange: Exchange,
        authorised: AuthorisedDossier,
        request: DossierRequest,
        traceparent: str | None,
    ) -> httpx.Response:
        session = authorised.session
        # Exactly one key, the one the session was granted with: the koppelsleutel of an
        # swv-dossier (rule 10), else the zoeksleutel.
        key = (
            {"koppelsleutel": request.koppelsleutel}
            if request.koppelsleutel is not None
            else {"zoeksleutel": request.zoeksleutel}
        )
        body = {
            "sessie_id": session.sessie_id,
            **key,
            "overdrachtsoort": session.overdrachtsoort.value,
            "aanvraagdatum": request.aanvraagdatum.isoformat() if request.aanvraagdatum else None,
            "doel_brin": session.doel_brin,
            "doel_routeringskenmerk": session.doel_routeringskenmerk,
            "doel_sector": session.doel_sector.value,
        }
        headers = {
            **exchange.entry.upstream_headers(traceparent),
            "Accept": DOSSIER_ACCEPT,
        }
        response = await upstream.open(
            authorised.endpoint.url.rstrip("/") + DOSSIER_PATH, body, headers
        )
        self._upstream_answered(exchange.entry, response.status_code)
        try:
            await accept_dossier_answer(
                upstream, response, release_needed=self._release_needed(authorised)
            )
        except BaseException:
            await upstream.release(response)
            raise
        return response

    def _release_needed(self, authorised: AuthorisedDossier) -> ParentRelease | None:
        """Rule 8: what the bron must attest before an overstapdossier may be streamed."""
        session = authorised.session
        if not self._require_release or session.overdrachtsoort is not (
            Overdrachtsoort.OVERSTAPDOSSIER
        ):
            return None
        return required_release(authorised.bron_school.sector, session.doel_sector)


async def _answered_by(deadline: float, answer: Awaitable[httpx.Response]) -> httpx.Response:
    """The bron's answer head, by the relay's deadline. The read timeout restarts at every
    byte, so a bron sending its head a byte at a time, or interim (1xx) answers one after
    another, would otherwise hold the slot for good: the deadline counts from the slot,
    before the answer's head as after it."""
    waiting = asyncio.timeout_at(deadline)
    try:
        async with waiting:
            return await answer
    except TimeoutError:
        if not waiting.expired():
            raise  # not ours
    raise UpstreamTimeout("the LAS's answer took longer than the relay's deadline")


class _StreamBack:
    """One dossier on its way from the bron to the doel, and how that ended."""

    def __init__(
        self,
        metrics: Metrics,
        upstream: UpstreamClient,
        response: httpx.Response,
        exchange: Exchange,
        *,
        slot: RelaySlot,
        deadline: float,
    ) -> None:
        self._metrics = metrics
        self._upstream = upstream
        self._response = response
        self._exchange = exchange
        self._slot = slot
        self._deadline = deadline  # anyio time: the slot comes back by then, however it ends
        # The same clock, read without anyio's backend lookup: it is read twice per chunk.
        self._now = asyncio.get_running_loop().time
        self._metered = MeteredStream(
            response.aiter_raw(), limit=upstream.limits.max_dossier_bytes, executor=upstream.hashing
        )
        self._result = DOEL_DISCONNECTED  # unless the stream says otherwise
        self._finished = False

    async def body(self) -> AsyncIterator[bytes]:
        # Per chunk: count, hash, one clock read. No cancel scope: the wait for the bron's
        # next chunk is bounded by the read timeout, so a relay past its deadline is cut at
        # its next chunk, at most one read timeout late. Bytes reach the metric in batches.
        uncounted = 0
        try:
            async for chunk in self._metered:
                if self._now() >= self._deadline:
                    self._cut(RELAY_DEADLINE_PASSED)
                uncounted += len(chunk)
                if uncounted >= BYTES_PER_METRIC_UPDATE:
                    self._metrics.relay_bytes.inc(uncounted)
                    uncounted = 0
                yield chunk
            self._result = ResultCode.OVERDRACHT_GESLAAGD.value
        except TransferAborted:
            raise
        except DossierTooLarge as too_large:
            self._result = too_large.code
            raise TransferAborted(too_large.detail) from None
        except httpx.TransportError as broken:
            # The bron hung up or stalled mid-stream: the doel must see a broken transfer.
            # "from None": httpx's message may quote the bytes it choked on (a dossier's),
            # and a chained traceback would put them in the log.
            self._result = ResultCode.OVERDRACHT_MISLUKT.value
            raise TransferAborted(f"the bron's stream broke off: {type(broken).__name__}") from None
        except Exception as unexpected:
            # A bug mid-stream: the doel sees a broken transfer, the record says InterneFout.
            self._result = INTERNAL_ERROR
            log.error(
                "exchange_internal_error",
                type=self._exchange.entry.type.value,
                transaction_id=self._exchange.entry.transaction_id,
                error=type(unexpected).__name__,
                where=raised_at(unexpected),
            )
            raise TransferAborted("the relay failed mid-stream") from None
        finally:
            self._metrics.relay_bytes.inc(uncounted)

    async def write(self, sending: Awaitable[None]) -> None:
        """One send toward the doel, within the write timeout and what is left of the deadline.

        uvicorn's flow control parks a send while the doel's TCP window is shut; a doel that
        never reads would hold its slot for good. asyncio's timeout, not an anyio cancel scope:
        this runs once per chunk, and the scope cost about three times as much (issue 14).
        """
        patience = self._upstream.limits.doel_write_timeout_seconds
        remaining = self._deadline - self._now()
        waiting = asyncio.timeout(min(patience, remaining))
        try:
            async with waiting:
                await sending
        except TimeoutError:
            if not waiting.expired():
                raise  # not ours: the send itself failed
        if waiting.expired():  # cut outside the handler: no TimeoutError chained to the abort
            self._cut(RELAY_DEADLINE_PASSED if remaining <= patience else DOEL_STOPPED_READING)

    def _cut(self, result: str) -> None:
        self._result = result
        raise TransferAborted(f"the relay was cut off: {result}")

    async def finish(self) -> None:
        """Give back the connection and the slot, then close the record; once, however it
        ended."""
        if self._finished:
            return
        self._finished = True
        await self._upstream.release(self._response)
        self._upstream.release_slot(self._slot)
        entry = self._exchange.entry
        kind = entry.type.value
        with anyio.CancelScope(shield=True):  # the record needs it, however the relay ended
            entry.size_bytes, entry.sha256 = self._metered.size, await self._metered.hexdigest()
        if self._result not in (ResultCode.OVERDRACHT_GESLAAGD.value, DOEL_DISCONNECTED):
            self._metrics.upstream_errors.labels(type=kind, code=self._result).inc()
        await self._exchange.close(self._result, http_status=200)
