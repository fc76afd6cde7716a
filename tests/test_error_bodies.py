"""Error bodies name the field that is wrong, never the rejected value (real TLS)."""

from __future__ import annotations

import httpx

from tests.support.messages import check_body, session_body
from tests.support.server import TrafficCenterUnderTest
from tests.test_broker_api import assert_problem

# Rejected values that carry a marker; none may come back in an answer.
MARKER = "Xq7marker"


async def test_domain_errors_name_the_field_not_the_value(tc: TrafficCenterUnderTest) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    granted = await client.post("/v1/sessions", json=session_body(bron))
    assert granted.status_code == 201
    sessie_id = granted.json()["sessie_id"]
    answers: list[tuple[httpx.Response, str]] = [
        (
            await client.post("/v1/sessions", json=session_body(bron, bron_brin=MARKER)),
            "OngeldigeBrin",
        ),
        (
            await client.post(
                "/v1/sessions", json=session_body(bron, overdrachtsoort=f"{MARKER}soort")
            ),
            "OngeldigeOverdrachtsoort",
        ),
        (
            await client.post(
                "/v1/sessions",
                json=session_body(bron, bron_routeringskenmerk=f"{MARKER}12345"),
            ),
            "OngeldigRouteringskenmerk",
        ),
        (await client.get("/v1/endpoints", params={"kind": MARKER}), "OngeldigeInvoer"),
        (
            await bron.client().post(
                f"/v1/sessions/{MARKER}-not-a-uuid/check", json=check_body(doel)
            ),
            "OngeldigeSessieId",
        ),
        (
            await client.post(
                f"/v1/sessions/{sessie_id}/close",
                json={"resultaat": MARKER, "routeringskenmerk": bron.routeringskenmerk},
            ),
            "OngeldigResultaat",
        ),
    ]
    for response, code in answers:
        assert_problem(response, 422, code)
        assert MARKER not in response.text, response.text


async def test_schema_errors_do_not_quote_the_input_or_an_unknown_field(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    unknown_field = await client.post(
        "/v1/sessions", json={**session_body(bron), "662460613": "x", f"{MARKER}": 1}
    )
    wrong_type = await client.post("/v1/sessions", json=session_body(bron, bron_brin=[MARKER]))
    too_long = await client.post("/v1/sessions", json=session_body(bron, bron_brin=MARKER * 3))
    for response in (unknown_field, wrong_type, too_long):
        assert_problem(response, 422, "OngeldigeInvoer")
        assert MARKER not in response.text, response.text
        assert "662460613" not in response.text
        # Still says where: the field, or that a field is unknown.
        assert response.json()["errors"][0]["loc"][0] == "body"
    assert ["body", "(unknown field)"] in [e["loc"] for e in unknown_field.json()["errors"]]
    assert too_long.json()["errors"][0]["loc"] == ["body", "bron_brin"]
