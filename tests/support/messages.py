"""Request bodies of the broker messages, as a doel or bron LAS sends them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.pupils import zoeksleutel_of
from tests.support.world import Party

# Zoeksleutel v1 of test PGN 662460613 under the public test key (a test vector).
ZOEKSLEUTEL = zoeksleutel_of("662460613")


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
