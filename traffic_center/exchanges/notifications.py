"""Messages the Traffic Center carries to a LAS that answer with a receipt: the notification
("it is ready", rule 6 in docs/rules.md), the school's notification to its samenwerkingsverband
and the SWV's feedback to the school (the SWV flow, rule 10).

The broker decided each may go; this module delivers it and judges the receipt.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx

from traffic_center.broker.service import (
    AuthorisedFeedback,
    AuthorisedNotification,
    AuthorisedSwvNotification,
)
from traffic_center.domain.errors import UpstreamInvalidAnswer, UpstreamTimeout
from traffic_center.domain.las_contract import FEEDBACK_PATH, NOTIFICATION_PATH
from traffic_center.domain.results import ResultCode
from traffic_center.exchanges.base import RelayExchange
from traffic_center.exchanges.runner import Exchange
from traffic_center.relay.upstream import UpstreamClient


class NotificationRelay(RelayExchange):
    async def deliver(
        self, exchange: Exchange, authorised: AuthorisedNotification, *, traceparent: str | None
    ) -> str:
        """Forward to the doel endpoint; its NotificatieOntvangen, or an error."""
        caller = exchange.caller
        body = {
            "sessie_id": authorised.session.sessie_id,
            "bron_brin": caller.brin,
            "bron_routeringskenmerk": caller.routeringskenmerk,
        }
        url = authorised.doel_endpoint.url.rstrip("/") + NOTIFICATION_PATH
        return await self._send(
            exchange,
            url,
            body,
            ResultCode.NOTIFICATIE_ONTVANGEN,
            traceparent,
            receiver_brin=authorised.session.doel_brin,
            sender=caller.routeringskenmerk,
        )

    async def deliver_swv(
        self, exchange: Exchange, authorised: AuthorisedSwvNotification, *, traceparent: str | None
    ) -> str:
        """The school's notification to its SWV endpoint, carrying the new koppelsleutel."""
        school = authorised.school_endpoint
        body = {
            "sessie_id": None,
            "koppelsleutel": authorised.koppelsleutel,
            "bron_brin": school.brin,
            "bron_routeringskenmerk": school.routeringskenmerk,
        }
        url = authorised.swv_endpoint.url.rstrip("/") + NOTIFICATION_PATH
        return await self._send(
            exchange,
            url,
            body,
            ResultCode.NOTIFICATIE_ONTVANGEN,
            traceparent,
            receiver_brin=authorised.swv_endpoint.brin,
            sender=school.routeringskenmerk,
        )

    async def deliver_feedback(
        self,
        exchange: Exchange,
        authorised: AuthorisedFeedback,
        terugkoppeling: str,
        *,
        traceparent: str | None,
    ) -> str:
        """The SWV's feedback to the school endpoint of the triple; relayed, never stored."""
        swv = authorised.swv_endpoint
        body = {
            "koppelsleutel": authorised.koppelsleutel,
            "swv_brin": swv.brin,
            "swv_routeringskenmerk": swv.routeringskenmerk,
            "terugkoppeling": terugkoppeling,
        }
        url = authorised.school_endpoint.url.rstrip("/") + FEEDBACK_PATH
        return await self._send(
            exchange,
            url,
            body,
            ResultCode.TERUGKOPPELING_ONTVANGEN,
            traceparent,
            receiver_brin=authorised.school_endpoint.brin,
            sender=swv.routeringskenmerk,
        )

    async def _send(
        self,
        exchange: Exchange,
        url: str,
        body: dict[str, Any],
        expected: ResultCode,
        traceparent: str | None,
        *,
        receiver_brin: str,
        sender: str,
    ) -> str:
        upstream = self._configured_upstream()
        # The same fair shares as a dossier: the receiving school, and the sending endpoint.
        slot = upstream.acquire_slot(doel_school=receiver_brin, bron_endpoint=sender)
        try:
            await exchange.open()  # fail closed: the started record, or nothing is forwarded
            headers = {
                **exchange.entry.upstream_headers(traceparent),
                "Accept": "application/json",
            }
            # A LAS trickling its small answer a byte per read timeout is still cut off.
            with anyio.fail_after(upstream.limits.total_seconds):
                response, answer = await self._post(upstream, exchange, url, body, headers)
        except TimeoutError:
            raise UpstreamTimeout(
                "the LAS's answer took longer than the relay's deadline"
            ) from None
        finally:
            upstream.release_slot(slot)
        return _received(response, answer, expected)

    async def _post(
        self,
        upstream: UpstreamClient,
        exchange: Exchange,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> tuple[httpx.Response, bytes]:
        response = await upstream.open(url, body, headers)
        try:
            self._upstream_answered(exchange.entry, response.status_code)
            return response, await upstream.read_answer(response)
        finally:
            await upstream.release(response)


def _received(response: httpx.Response, answer: bytes, expected: ResultCode) -> str:
    """The LAS must confirm with the expected receipt; anything else is not a delivery."""
    if response.status_code == httpx.codes.OK:
        try:
            parsed = json.loads(answer)
        except (ValueError, RecursionError):  # not JSON, or absurdly nested
            parsed = None
        if isinstance(parsed, dict) and parsed.get("resultaat") == expected.value:
            return expected.value
    raise UpstreamInvalidAnswer(
        f"the LAS answered HTTP {response.status_code} without {expected.value}"
    )
