"""Error bodies name the field that is wrong, never the rejected value (real TLS)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.contract import assert_documented
from tests.support.messages import check_body, session_body
from tests.support.server import TrafficCenterUnderTest
from tests.test_broker_api import assert_problem

# Every answer the tests here get is one openapi.yaml declares (tests/support/contract.py).
pytestmark = pytest.mark.usefixtures("answers_documented")

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


# Bodies no JSON parser reads: not UTF-8, nested past the recursion limit, an integer past
# Python's 4,300-digit limit. Each fits under the body cap.
UNREADABLE = {
    "not UTF-8": b'{"bron_brin": "\xff"}',
    "nested 5,000 deep": b"[" * 5000 + b"]" * 5000,
    "an integer of 5,000 digits": b'{"bron_brin": ' + b"1" * 5000 + b"}",
}
SESSIE_ID = "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10"
# The plain routes (api/plain.py) and routes FastAPI serves: they must answer alike.
BODY_ROUTES = (
    "/v1/sessions",
    f"/v1/sessions/{SESSIE_ID}/close",
    f"/v1/sessions/{SESSIE_ID}/dossier",
    f"/v1/sessions/{SESSIE_ID}/check",
    "/v1/notifications",
    "/v1/swv/notifications",
    "/v1/swv/feedback",
)


async def test_an_unreadable_body_is_invalid_input_422_saying_where(
    tc: TrafficCenterUnderTest,
) -> None:
    client = (await tc.world.school("PO")).client()
    for label, body in UNREADABLE.items():
        for path in BODY_ROUTES:
            answer = await client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            assert_problem(answer, 422, "OngeldigeInvoer")
            (error,) = answer.json()["errors"]
            assert error["loc"] == ["body"], (label, path)
            assert error["msg"].startswith("the body could not be read"), (label, path)
            assert_documented(answer)


async def test_a_body_over_the_cap_is_413_where_the_contract_declares_it(
    tc: TrafficCenterUnderTest,
) -> None:
    client = (await tc.world.school("PO")).client()
    too_large = b" " * (tc.settings.max_request_body_bytes + 1)
    for path in BODY_ROUTES:
        answer = await client.post(
            path, content=too_large, headers={"content-type": "application/json"}
        )
        assert_problem(answer, 413, "VerzoekTeGroot")
        assert_documented(answer)
