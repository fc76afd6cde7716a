"""documentRequest is served by a plain ASGI route in front of its declaration (issue 14).

The declaration stays the contract's source; these tests hold the plain route to it: it is
the route that answers, it refuses every malformed request exactly as FastAPI refuses it for
the declaration (status, body, the errors' locations and messages), and each refusal is one
the contract documents for the operation. The Traffic Center is the real one over mTLS; the
declaration is served in-process by FastAPI, as the reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI
from jsonschema import Draft202012Validator
from starlette.routing import Match

from tests.support.server import TrafficCenterUnderTest
from traffic_center.api.app import create_app, install_error_handlers
from traffic_center.api.plain import PlainRoute
from traffic_center.api.routes import exchanges
from traffic_center.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SESSIE_ID = "0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10"
GOOD = {
    "routeringskenmerk": "00000007000012000001",
    "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
}
JSON = {"content-type": "application/json"}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# label, sessie_id, headers, body: each malformed somewhere, none reaches the exchange.
MALFORMED: list[tuple[str, str, dict[str, str], bytes]] = [
    ("no body", SESSIE_ID, JSON, b""),
    ("no body, no type", SESSIE_ID, {}, b""),
    ("broken JSON", SESSIE_ID, JSON, b'{"routeringskenmerk": '),
    ("not UTF-8", SESSIE_ID, JSON, b'{"routeringskenmerk": "\xff"}'),
    ("JSON without a content type", SESSIE_ID, {}, dumps(GOOD)),
    ("JSON as text/plain", SESSIE_ID, {"content-type": "text/plain"}, dumps(GOOD)),
    (
        "+json with an unknown field",
        SESSIE_ID,
        {"content-type": "application/merge-patch+json; charset=utf-8"},
        dumps({**GOOD, "662460613": "x"}),
    ),
    ("null", SESSIE_ID, JSON, b"null"),
    ("an array", SESSIE_ID, JSON, b"[]"),
    ("a string", SESSIE_ID, JSON, b'"x"'),
    ("no routeringskenmerk", SESSIE_ID, JSON, dumps({"zoeksleutel": GOOD["zoeksleutel"]})),
    (
        "wrong types",
        SESSIE_ID,
        JSON,
        dumps({"routeringskenmerk": 7, "zoeksleutel": ["x"], "aanvraagdatum": 20260131}),
    ),
    (
        "too long",
        SESSIE_ID,
        JSON,
        dumps({**GOOD, "routeringskenmerk": "1" * 41, "koppelsleutel": "K" * 65}),
    ),
    ("a moment for a day", SESSIE_ID, JSON, dumps({**GOOD, "aanvraagdatum": "2026-01-31T08:00Z"})),
    ("a long traceparent", SESSIE_ID, {**JSON, "traceparent": "0" * 129}, dumps(GOOD)),
    (
        "everything wrong at once",
        "b" * 40,
        {**JSON, "traceparent": "x" * 200},
        dumps({"routeringskenmerk": None, "x": 1}),
    ),
]


def declared_only() -> FastAPI:
    """The operation as FastAPI serves its declaration, with the app's error handlers."""
    app = FastAPI()
    app.include_router(exchanges.router)
    install_error_handlers(app)
    # Its dependencies are solved before the parameters are checked; none of these requests
    # gets further, so the services are never used.
    app.state.services = object()
    return app


def answered(response: httpx.Response) -> tuple[int, str, Any, str | None]:
    return (
        response.status_code,
        response.headers["content-type"],
        response.json(),
        response.headers.get("allow"),
    )


def test_the_plain_route_is_the_one_that_answers(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path))
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/v1/sessions/{SESSIE_ID}/dossier",
        "root_path": "",
        "headers": [],
    }
    first = next(route for route in app.router.routes if route.matches(scope)[0] is Match.FULL)
    assert isinstance(first, PlainRoute)
    assert first.name == "relay_dossier_asgi"
    assert first.matches(scope)[1]["route"] is first  # metrics label by its template
    assert first.path == "/v1/sessions/{sessie_id}/dossier"


async def test_malformed_requests_are_refused_as_the_declaration_refuses_them(
    tc: TrafficCenterUnderTest,
) -> None:
    client = (await tc.world.school("VO")).client()
    reference = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=declared_only()), base_url="https://reference"
    )
    async with reference:
        for label, sessie_id, headers, body in MALFORMED:
            path = f"/v1/sessions/{sessie_id}/dossier"
            served = await client.post(path, headers=headers, content=body)
            declared = await reference.post(path, headers=headers, content=body)
            assert answered(served) == answered(declared), label
            assert served.status_code in (400, 422), label
        served = await client.get(f"/v1/sessions/{SESSIE_ID}/dossier")
        declared = await reference.get(f"/v1/sessions/{SESSIE_ID}/dossier")
        assert answered(served) == answered(declared)
        assert served.status_code == 405
    # A sessie_id of any length is the domain's to refuse, as every malformed one is.
    too_long = await client.post(
        f"/v1/sessions/{'a' * 37}/dossier", headers=JSON, content=dumps(GOOD)
    )
    assert (too_long.status_code, too_long.json()["code"]) == (422, "OngeldigeSessieId")


async def test_every_refusal_is_one_the_contract_documents(tc: TrafficCenterUnderTest) -> None:
    doc = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    responses = doc["paths"]["/v1/sessions/{sessie_id}/dossier"]["post"]["responses"]
    problem = Draft202012Validator(
        {"$ref": "#/components/schemas/Problem", "components": doc["components"]}
    )
    client = (await tc.world.school("VO")).client()
    for label, sessie_id, headers, body in MALFORMED:
        answer = await client.post(
            f"/v1/sessions/{sessie_id}/dossier", headers=headers, content=body
        )
        documented = responses[str(answer.status_code)]
        assert answer.headers["content-type"] in documented["content"], label
        problem.validate(answer.json())
        if answer.status_code == 422:
            assert answer.json()["code"] in documented["x-codes"], label
            assert answer.json()["errors"], label
        # 400 (a body that is not UTF-8) is OngeldigeInvoer, under a 400 the contract lists
        # for forwarded certificates only: as every route answered it before issue 14.
