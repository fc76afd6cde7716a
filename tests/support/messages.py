"""Request bodies of the broker messages, as a doel or bron LAS sends them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.world import Party

ZOEKSLEUTEL = "3f9a1c2b7d4e5f60718293a4b5c6d7e8"


def session_body(bron: Party, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bron_brin": bron.brin,
        "overdrachtsoort": "overstapdossier",
        "zoeksleutel": ZOEKSLEUTEL,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def check_body(doel: Party, **changes: Any) -> dict[str, Any]:
    body = {
        "doel_brin": doel.brin,
        "doel_routeringskenmerk": doel.routeringskenmerk,
        "overdrachtsoort": "overstapdossier",
        "zoeksleutel": ZOEKSLEUTEL,
    }
    body.update(changes)
    return body


async def open_session(doel: Party, bron: Party, **changes: Any) -> httpx.Response:
    return await doel.client().post("/v1/sessions", json=session_body(bron, **changes))
