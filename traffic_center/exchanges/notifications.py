"""meldenNotificatieRequest through the Traffic Center: the bron tells the doel "it is ready".

The broker decided the notification may go (rule 6 in docs/rules.md); this module delivers it
to the doel endpoint and judges the doel's answer.
"""

from __future__ import annotations

import json

import anyio
import httpx

from traffic_center.broker.service import AuthorisedNotification
from traffic_center.domain.errors import UpstreamInvalidAnswer, UpstreamTimeout
from traffic_center.domain.las_contract import NOTIFICATION_PATH
from traffic_center.domain.results import ResultCode
from traffic_center.exchanges.base import RelayExchange
from traffic_center.exchanges.runner import Exchange
from traffic_center.relay.upstream import UpstreamClient


class NotificationRelay(RelayExchange):
    async def deliver(
        self, exchange: Exchange, authorised: AuthorisedNotification, *, traceparent: str | None
    ) -> str:
        """Forward to the doel endpoint; its NotificatieOntvangen, or an error."""
        upstream = self._configured_upstream()
        session = authorised.session
        # The same fair shares as a dossier: the doel school, and the bron endpoint (the caller).
        slot = upstream.acquire_slot(
            doel_school=session.doel_brin, bron_endpoint=exchange.caller.routeringskenmerk
        )
        try:
            await exchange.open()  # fail closed: the started record, or nothing is forwarded
            # A doel trickling its small answer a byte per read timeout is still cut off.
            with anyio.fail_after(upstream.limits.total_seconds):
                response, answer = await self._forward(upstream, exchange, authorised, traceparent)
        except TimeoutError:
            raise UpstreamTimeout(
                "the doel's answer took longer than the relay's deadline"
            ) from None
        finally:
            upstream.release_slot(slot)
        return _received(response, answer)

    async def _forward(
        self,
        upstream: UpstreamClient,
        exchange: Exchange,
        authorised: AuthorisedNotification,
        traceparent: str | None,
    ) -> tuple[httpx.Response, bytes]:
        caller = exchange.caller
        body = {
            "sessie_id": authorised.session.sessie_id,
            "bron_brin": caller.brin,
            "bron_routeringskenmerk": caller.routeringskenmerk,
        }
        headers = {
            **exchange.entry.upstream_headers(traceparent),
            "Accept": "application/json",
        }
        response = await upstream.open(
            authorised.doel_endpoint.url.rstrip("/") + NOTIFICATION_PATH, body, headers
        )
        try:
            self._upstream_answered(exchange.entry, response.status_code)
            return response, await upstream.read_answer(response)
        finally:
            await upstream.release(response)


def _received(response: httpx.Response, answer: bytes) -> str:
    """The doel must confirm with NotificatieOntvangen; anything else is not a delivery."""
    expected = ResultCode.NOTIFICATIE_ONTVANGEN.value
    if response.status_code == httpx.codes.OK:
        try:
            parsed = json.loads(answer)
        except (ValueError, RecursionError):  # not JSON, or absurdly nested
            parsed = None
        if isinstance(parsed, dict) and parsed.get("resultaat") == expected:
            return expected
    raise UpstreamInvalidAnswer(f"the doel answered HTTP {response.status_code} without {expected}")
