"""overdrachtRequest and afmeldingRequest are served by plain ASGI routes in front of their
declarations (issue 14, api/plain.py).

The declarations stay the contract's source; these tests hold the plain routes to them on the
running Traffic Center itself, over mTLS: each request is sent once as the app serves it, and
once with the plain routes set aside so that FastAPI answers it from the declaration, through
the same middleware, store and services. Good and malformed requests alike must be answered
the same: status, headers (the per-answer ids and date by name only), body.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.messages import check_body, session_body
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.api.plain import PlainRoute

# Every answer the tests here get is one openapi.yaml declares (tests/support/contract.py).
pytestmark = pytest.mark.usefixtures("answers_documented")

JSON = {"content-type": "application/json"}
# Set per answer (by the server, the middleware, the exchange's record): compared by name.
PER_ANSWER = {"date", "x-request-id", "x-oso-transactie-id"}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def live_app(tc: TrafficCenterUnderTest) -> FastAPI:
    app = tc.server.vendor.config.app
    assert isinstance(app, FastAPI)
    return app


@contextlib.contextmanager
def declarations_answering(tc: TrafficCenterUnderTest) -> Iterator[None]:
    """The plain routes set aside for a moment: the router reads its list per request."""
    routes = live_app(tc).router.routes
    saved = list(routes)
    routes[:] = [route for route in saved if not isinstance(route, PlainRoute)]
    assert len(routes) == len(saved) - 3
    try:
        yield
    finally:
        routes[:] = saved


def answer_of(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, "…" if k in PER_ANSWER else v) for k, v in response.headers.multi_items()]
    return response.status_code, headers, response.content


async def both(
    tc: TrafficCenterUnderTest, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The same request as the app serves it, then as the declaration serves it."""
    served = await client.request(method, path, **kwargs)
    with declarations_answering(tc):
        declared = await client.request(method, path, **kwargs)
    return served, declared


def malformed_opens(bron: Party) -> list[tuple[str, dict[str, str], bytes]]:
    good = session_body(bron)
    return [
        ("no body", JSON, b""),
        ("no body, no type", {}, b""),
        ("broken JSON", JSON, b'{"bron_brin": '),
        ("not UTF-8", JSON, b'{"bron_brin": "\xff"}'),
        ("JSON without a content type", {}, dumps(good)),
        ("JSON as text/plain", {"content-type": "text/plain"}, dumps(good)),
        (
            "+json with an unknown field",
            {"content-type": "application/x+json"},
            dumps({**good, "x": 1}),
        ),
        ("null", JSON, b"null"),
        ("an array", JSON, b"[]"),
        ("no zoeksleutel", JSON, dumps({**good, "zoeksleutel": None})),
        ("wrong types", JSON, dumps({**good, "bron_brin": 7, "overdrachtsoort": ["x"]})),
        ("a long key", {**JSON, "idempotency-key": "k" * 201}, dumps(good)),
        ("everything at once", {**JSON, "idempotency-key": "k" * 300}, dumps({"x": None})),
        ("a pupil number as the key", {**JSON, "idempotency-key": "662460613"}, dumps(good)),
        ("an unknown bron", JSON, dumps({**good, "bron_brin": "99ZZ"})),
    ]


async def test_malformed_opens_are_refused_as_the_declaration_refuses_them(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    for label, headers, body in malformed_opens(bron):
        served, declared = await both(
            tc, client, "POST", "/v1/sessions", headers=headers, content=body
        )
        assert answer_of(served) == answer_of(declared), label
        assert served.status_code in (400, 404, 422), label
    served, declared = await both(tc, client, "GET", "/v1/sessions")
    assert answer_of(served) == answer_of(declared)
    assert served.status_code == 405


async def test_a_granted_session_is_answered_as_the_declaration_answers_it(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    key = {"idempotency-key": f"k-{uuid.uuid4()}"}
    first = await client.post("/v1/sessions", json=session_body(bron), headers=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # A replay is the same session, byte for byte, with its header.
    served, declared = await both(
        tc, client, "POST", "/v1/sessions", json=session_body(bron), headers=key
    )
    assert answer_of(served) == answer_of(declared)
    assert served.headers["idempotent-replayed"] == "true"
    assert served.content == first.content
    # Two fresh sessions differ in their id and expiry only.
    served, declared = await both(tc, client, "POST", "/v1/sessions", json=session_body(bron))
    assert [served.status_code, declared.status_code] == [201, 201]
    assert [k for k, _ in answer_of(served)[1]] == [k for k, _ in answer_of(declared)[1]]
    assert served.headers["content-type"] == declared.headers["content-type"]
    assert masked(served, "sessie_id", "expires_at") == masked(declared, "sessie_id", "expires_at")
    assert served.json()["sessie_id"] != declared.json()["sessie_id"]


def masked(response: httpx.Response, *fields: str) -> dict[str, Any]:
    answer: dict[str, Any] = response.json()
    assert all(answer[name] for name in fields)
    return {**answer, **dict.fromkeys(fields, "…")}


async def test_malformed_closes_are_refused_as_the_declaration_refuses_them(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    good = {"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": bron.routeringskenmerk}
    sessie_id = str(uuid.uuid4())  # unknown: the well-formed requests get a 404
    cases: list[tuple[str, str, dict[str, str], bytes]] = [
        ("no body", sessie_id, JSON, b""),
        ("broken JSON", sessie_id, JSON, b"{"),
        ("not UTF-8", sessie_id, JSON, b'{"resultaat": "\xff"}'),
        ("JSON as text/plain", sessie_id, {"content-type": "text/plain"}, dumps(good)),
        ("an array", sessie_id, JSON, b"[]"),
        ("no resultaat", sessie_id, JSON, dumps({"routeringskenmerk": bron.routeringskenmerk})),
        ("wrong types", sessie_id, JSON, dumps({"resultaat": 1, "routeringskenmerk": []})),
        ("an unknown result", sessie_id, JSON, dumps({**good, "resultaat": "Prima"})),
        ("a long sessie_id", "a" * 37, JSON, dumps(good)),
        ("everything wrong at once", "b" * 40, JSON, dumps({"x": None})),
        ("an unknown session", sessie_id, JSON, dumps(good)),
    ]
    for label, sessie, headers, body in cases:
        path = f"/v1/sessions/{sessie}/close"
        served, declared = await both(tc, client, "POST", path, headers=headers, content=body)
        assert answer_of(served) == answer_of(declared), label
        assert served.status_code in (400, 404, 422), label
    served, declared = await both(tc, client, "GET", f"/v1/sessions/{sessie_id}/close")
    assert answer_of(served) == answer_of(declared)
    assert served.status_code == 405


async def test_a_close_is_answered_as_the_declaration_answers_it(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    client = doel.client()
    opened = [
        (await client.post("/v1/sessions", json=session_body(bron))).json()["sessie_id"]
        for _ in range(2)
    ]
    for sessie_id in opened:  # the bron checked it: the result is witnessed
        checked = await bron.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(doel))
        assert checked.status_code == 200, checked.text
    good = {"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": bron.routeringskenmerk}
    served = await client.post(f"/v1/sessions/{opened[0]}/close", json=good)
    with declarations_answering(tc):
        declared = await client.post(f"/v1/sessions/{opened[1]}/close", json=good)
    assert [served.status_code, declared.status_code] == [200, 200]
    assert [k for k, _ in answer_of(served)[1]] == [k for k, _ in answer_of(declared)[1]]
    assert masked(served, "sessie_id", "closed_at") == masked(declared, "sessie_id", "closed_at")
    assert served.json()["sessie_id"] == opened[0]
    # Closing again is refused alike.
    served, declared = await both(tc, client, "POST", f"/v1/sessions/{opened[0]}/close", json=good)
    assert answer_of(served) == answer_of(declared)
    assert served.status_code == 409


def test_the_plain_routes_are_served_before_the_middleware_stack(
    tc: TrafficCenterUnderTest,
) -> None:
    """The front chooses the plain route for its POSTs, and only for those."""
    front = live_app(tc).front
    assert front is not None

    def chosen(method: str, path: str) -> str | None:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        found = front.route_for(scope)
        return found[0].path if found is not None else None

    sessie = f"/v1/sessions/{uuid.uuid4()}"
    assert chosen("POST", "/v1/sessions") == "/v1/sessions"
    assert chosen("POST", f"{sessie}/close") == "/v1/sessions/{sessie_id}/close"
    assert chosen("POST", f"{sessie}/dossier") == "/v1/sessions/{sessie_id}/dossier"
    assert chosen("GET", "/v1/sessions") is None  # a 405: FastAPI's
    assert chosen("POST", f"{sessie}/check") is None
    assert chosen("POST", "/v1/sessions/") is None
    with declarations_answering(tc):
        assert chosen("POST", "/v1/sessions") is None


async def fresh_both(
    tc: TrafficCenterUnderTest, party: Party, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    """As ``both``, each on a connection of its own: these answers close theirs."""
    served = await party.new_client().post(path, **kwargs)
    with declarations_answering(tc):
        declared = await party.new_client().post(path, **kwargs)
    return served, declared


async def oversized() -> AsyncIterator[bytes]:
    for _ in range(40):
        yield b" " * 1024  # chunked: past the 16 KiB cap as it arrives


async def test_guard_refusals_are_answered_as_through_the_stack(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, _bron = await tc.world.schools("PO", "PO")
    for path in ("/v1/sessions", f"/v1/sessions/{uuid.uuid4()}/close"):
        served, declared = await fresh_both(tc, doel, path, headers=JSON, content=b" " * 17000)
        assert answer_of(served) == answer_of(declared)
        assert served.status_code == 413
        assert served.headers["connection"] == "close"
        served = await doel.new_client().post(path, headers=JSON, content=oversized())
        with declarations_answering(tc):
            declared = await doel.new_client().post(path, headers=JSON, content=oversized())
        assert answer_of(served) == answer_of(declared)
        assert served.status_code == 413


async def test_an_unexpected_error_is_answered_as_through_the_stack(
    tc: TrafficCenterUnderTest,
) -> None:
    """Outside the exchange runner (here: the service itself fails), the 500 problem."""
    doel, bron = await tc.world.schools("PO", "PO")
    services = live_app(tc).state.services

    async def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError

    services.exchanges.open_session = failing
    try:
        served, declared = await fresh_both(tc, doel, "/v1/sessions", json=session_body(bron))
    finally:
        del services.exchanges.open_session  # the class's method again
    assert answer_of(served) == answer_of(declared)
    assert served.status_code == 500
    assert served.json()["code"] == "InterneFout"
