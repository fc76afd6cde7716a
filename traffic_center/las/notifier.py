"""Telling the TC a nietgereed dossier has become ready (meldenNotificatieRequest)."""

from __future__ import annotations

import asyncio

import httpx

from traffic_center.las.doel import ClientTLS

NOTIFY_ATTEMPTS = 3
NOTIFY_BACKOFF_SECONDS = 0.5


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

    async def aclose(self) -> None:
        await self._client.aclose()
