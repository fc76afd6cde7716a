"""Telling the TC a nietgereed dossier has become ready (meldenNotificatieRequest), and in the
SWV flow telling the school's samenwerkingsverband (which issues a koppelsleutel)."""

from __future__ import annotations

import asyncio

import httpx

from traffic_center.las.doel import ClientTLS

NOTIFY_ATTEMPTS = 3
NOTIFY_BACKOFF_SECONDS = 0.5
# At start-up the TC may not be listening yet: try for about a minute before giving up.
SWV_NOTIFY_ATTEMPTS = 60
SWV_NOTIFY_INTERVAL_SECONDS = 1.0


class TcNotifier:
    """meldenNotificatieRequest: tells the TC a dossier is ready, with this school's certificate."""

    def __init__(
        self,
        tc_url: str,
        *,
        tls: ClientTLS | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        verify = tls.ssl_context() if tls is not None else True
        self._client = httpx.AsyncClient(
            base_url=tc_url.rstrip("/"), verify=verify, transport=transport, timeout=10.0
        )

    async def notify(self, sessie_id: str, doel_routeringskenmerk: str) -> int:
        """The TC's status, retrying a few times when it is down or busy; 0 if it never answered."""
        body = {"sessie_id": sessie_id, "doel_routeringskenmerk": doel_routeringskenmerk}
        status = 0
        for attempt in range(NOTIFY_ATTEMPTS):
            if attempt:
                await asyncio.sleep(NOTIFY_BACKOFF_SECONDS * attempt)
            try:
                status = (await self._client.post("/v1/notifications", json=body)).status_code
            except httpx.TransportError:
                continue
            if status < 500:
                return status
        return status

    async def check_session(self, sessie_id: str, body: dict[str, str]) -> tuple[int, str | None]:
        """sessiecontroleRequest: the TC's status and result code; (0, None) if unreachable."""
        try:
            response = await self._client.post(f"/v1/sessions/{sessie_id}/check", json=body)
        except httpx.TransportError:
            return 0, None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code = answer.get("code") if isinstance(answer, dict) else None
        return response.status_code, code if isinstance(code, str) else None

    async def notify_swv(self, swv_routeringskenmerk: str) -> tuple[int, str | None]:
        """``POST /v1/swv/notifications``: the TC's status and the koppelsleutel it issued
        (None unless 200), retrying while the TC cannot be reached or is busy."""
        body = {"doel_routeringskenmerk": swv_routeringskenmerk}
        status = 0
        for attempt in range(SWV_NOTIFY_ATTEMPTS):
            if attempt:
                await asyncio.sleep(SWV_NOTIFY_INTERVAL_SECONDS)
            try:
                response = await self._client.post("/v1/swv/notifications", json=body)
            except httpx.TransportError:
                continue
            status = response.status_code
            if status == httpx.codes.OK:
                koppelsleutel = response.json().get("koppelsleutel")
                return status, koppelsleutel if isinstance(koppelsleutel, str) else None
            if status < 500:
                return status, None
        return status, None

    async def aclose(self) -> None:
        await self._client.aclose()
