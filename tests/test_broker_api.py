"""The OSO session flow over real TLS: every rule allowed and refused, on both backends."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import uuid

import httpx
import pytest
from sqlalchemy import select

from tests.support.dumps import dump_database
from tests.support.messages import ZOEKSLEUTEL, check_body, open_session, session_body
from tests.support.pupils import zoeksleutel_of
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.store.schema import sessions

# Every answer the tests here get is one openapi.yaml declares (tests/support/contract.py).
pytestmark = pytest.mark.usefixtures("answers_documented")

OTHER_ZOEKSLEUTEL = zoeksleutel_of("482782481")


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def stored_state(tc: TrafficCenterUnderTest, sessie_id: str) -> tuple[str, str | None]:
    async with tc.store.database.transaction() as conn:
        row = (
            await conn.execute(
                select(sessions.c.state, sessions.c.result).where(sessions.c.sessie_id == sessie_id)
            )
        ).one()
    return row.state, row.result


# --- the whole flow and who may see it --------------------------------------------------------


async def test_doel_opens_bron_checks_doel_closes_and_a_third_party_sees_nothing(
    tc: TrafficCenterUnderTest,
) -> None:
    a, b, c = await tc.world.schools("PO", "PO", "VO")
    opened = await open_session(a, b)
    assert opened.status_code == 201, opened.text
    granted = opened.json()
    sessie_id = granted["sessie_id"]
    assert granted["bron_endpoints"] == [
        {"routeringskenmerk": b.routeringskenmerk, "url": f"https://las-{b.brin.lower()}.test/oso"}
    ]
    assert dt.datetime.fromisoformat(granted["expires_at"]) > dt.datetime.now(dt.UTC)

    # C can neither check, close, nor learn that the session exists.
    for response in (
        await c.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(a)),
        await c.client().post(
            f"/v1/sessions/{sessie_id}/close",
            json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": b.routeringskenmerk},
        ),
    ):
        assert_problem(response, 404, "SessieNietGevonden")
    unknown = await c.client().post(f"/v1/sessions/{uuid.uuid4()}/check", json=check_body(a))
    assert_problem(unknown, 404, "SessieNietGevonden")
    assert await stored_state(tc, sessie_id) == ("GRANTED", None)

    checked = await b.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(a))
    assert checked.status_code == 200, checked.text
    assert checked.json() == {
        "resultaat": "SessieValide",
        "doel_sector": "PO",
        "sessie_id": sessie_id,
    }
    assert await stored_state(tc, sessie_id) == ("CHECKED", None)

    closed = await a.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": b.routeringskenmerk},
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "CLOSED"
    assert closed.json()["resultaat"] == "OverdrachtGeslaagd"
    assert await stored_state(tc, sessie_id) == ("CLOSED", "OverdrachtGeslaagd")

    again = await a.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": b.routeringskenmerk},
    )
    assert_problem(again, 409, "SessieReedsAfgemeld")
    late_check = await b.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(a))
    assert_problem(late_check, 409, "SessieReedsAfgemeld")


async def test_roles_are_not_interchangeable(tc: TrafficCenterUnderTest) -> None:
    a, b = await tc.world.schools("VO", "PO")
    sessie_id = (await open_session(a, b)).json()["sessie_id"]
    assert_problem(
        await a.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(a)),
        403,
        "VerkeerdeRol",
    )
    assert_problem(
        await b.client().post(
            f"/v1/sessions/{sessie_id}/close",
            json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": b.routeringskenmerk},
        ),
        403,
        "VerkeerdeRol",
    )
    assert await stored_state(tc, sessie_id) == ("GRANTED", None)


# --- rule 1: the caller's endpoint ------------------------------------------------------------


async def test_rule_1_caller_must_be_a_registered_active_endpoint(
    tc: TrafficCenterUnderTest,
) -> None:
    bron = await tc.world.school("PO")
    unregistered = await tc.world.school("PO", register_endpoint=False)
    assert_problem(await open_session(unregistered, bron), 403, "EigenAanleverpuntOnbekend")

    doel = await tc.world.school("PO")
    assert (await open_session(doel, bron)).status_code == 201
    await tc.registry.deactivate_endpoint(doel.routeringskenmerk)
    assert_problem(await open_session(doel, bron), 403, "EigenAanleverpuntNietActief")

    other = await tc.world.school("PO")
    await tc.registry.deactivate_school(other.brin)
    assert_problem(await open_session(other, bron), 403, "EigenAanleverpuntNietActief")


# --- rule 2: bron known and active ------------------------------------------------------------


async def test_rule_2_bron_school_must_be_known_and_active(tc: TrafficCenterUnderTest) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    assert (await open_session(doel, bron)).status_code == 201
    unknown = await doel.client().post(
        "/v1/sessions", json={**session_body(bron), "bron_brin": "99ZZ"}
    )
    assert_problem(unknown, 404, "VerstrekkerNietBekend")
    await tc.registry.deactivate_school(bron.brin)
    assert_problem(await open_session(doel, bron), 404, "VerstrekkerNietBekend")


async def test_rule_2_named_bron_endpoint_must_belong_to_the_bron_and_be_active(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron, elsewhere = await tc.world.schools("PO", "PO", "PO")
    named = await open_session(doel, bron, bron_routeringskenmerk=bron.routeringskenmerk)
    assert named.status_code == 201
    assert [e["routeringskenmerk"] for e in named.json()["bron_endpoints"]] == [
        bron.routeringskenmerk
    ]
    foreign = await open_session(doel, bron, bron_routeringskenmerk=elsewhere.routeringskenmerk)
    assert_problem(foreign, 404, "OnbekendAanleverpunt")
    await tc.registry.deactivate_endpoint(bron.routeringskenmerk)
    inactive = await open_session(doel, bron, bron_routeringskenmerk=bron.routeringskenmerk)
    assert_problem(inactive, 409, "AanleverpuntNietActief")
    assert_problem(await open_session(doel, bron), 409, "AanleverpuntNietActief")


# --- rule 3 and the overstap pairs ------------------------------------------------------------


async def test_rule_3_overdracht_binnen_brin_needs_the_same_brin(
    tc: TrafficCenterUnderTest,
) -> None:
    doel = await tc.world.school("VO")
    same_school = await tc.world.school("VO", brin=doel.brin, add_school=False)
    other_school = await tc.world.school("VO")
    inside = await open_session(doel, same_school, overdrachtsoort="overdrachtbinnenbrin")
    assert inside.status_code == 201, inside.text
    across = await open_session(doel, other_school, overdrachtsoort="overdrachtbinnenbrin")
    assert_problem(across, 403, "GeenRelatieMetDoel")


async def test_overstapdossier_goes_po_po_po_vo_or_vo_vo_only(tc: TrafficCenterUnderTest) -> None:
    po, vo = await tc.world.schools("PO", "VO")
    other_po, other_vo = await tc.world.schools("PO", "VO")
    assert (await open_session(po, other_po)).status_code == 201  # PO→PO
    assert (await open_session(vo, po)).status_code == 201  # bron PO → doel VO
    assert (await open_session(vo, other_vo)).status_code == 201  # VO→VO
    assert_problem(await open_session(po, vo), 403, "GeenRelatieMetDoel")  # VO→PO


# --- rule 4: the session check matches on every field ----------------------------------------


async def test_rule_4_check_must_match_every_field(tc: TrafficCenterUnderTest) -> None:
    doel, bron, stranger = await tc.world.schools("VO", "VO", "VO")
    sessie_id = (await open_session(doel, bron)).json()["sessie_id"]
    path = f"/v1/sessions/{sessie_id}/check"
    for wrong in (
        {"doel_brin": stranger.brin},
        {"doel_routeringskenmerk": stranger.routeringskenmerk},
        {"overdrachtsoort": "overdrachtbinnenbrin"},
        {"zoeksleutel": OTHER_ZOEKSLEUTEL},
    ):
        response = await bron.client().post(path, json=check_body(doel, **wrong))
        assert_problem(response, 409, "SessieAfwijkend")
    # A key of the wrong kind for the overdrachtsoort asked about is the request's own fault
    # (rule 10), as on the dossier: 422, whatever the session holds.
    for wrong_kind in (
        {"zoeksleutel": None, "koppelsleutel": "0F8FAD5B-D9CB-469F-A165-70867728950E"},
        {"overdrachtsoort": "swv-dossier"},
    ):
        response = await bron.client().post(path, json=check_body(doel, **wrong_kind))
        assert_problem(response, 422, "SleutelPastNietBijOverdrachtsoort")
    assert await stored_state(tc, sessie_id) == ("GRANTED", None)
    ok = await bron.client().post(path, json=check_body(doel))
    assert ok.status_code == 200
    assert ok.json()["doel_sector"] == "VO"


# --- rule 5: nothing on a closed or expired session ------------------------------------------


async def test_rule_5_expired_session_refuses_check_and_close(tc: TrafficCenterUnderTest) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    sessie_id = (await open_session(doel, bron)).json()["sessie_id"]
    tc.clock.offset = dt.timedelta(seconds=tc.settings.session_ttl_seconds + 1)
    try:
        check = await bron.client().post(f"/v1/sessions/{sessie_id}/check", json=check_body(doel))
        close = await doel.client().post(
            f"/v1/sessions/{sessie_id}/close",
            json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": bron.routeringskenmerk},
        )
    finally:
        tc.clock.offset = dt.timedelta()
    assert_problem(check, 410, "SessieVerlopen")
    assert_problem(close, 410, "SessieVerlopen")
    assert await stored_state(tc, sessie_id) == ("GRANTED", None)


async def test_close_needs_a_closing_result_and_a_bron_endpoint(tc: TrafficCenterUnderTest) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    sessie_id = (await open_session(doel, bron)).json()["sessie_id"]
    path = f"/v1/sessions/{sessie_id}/close"
    bad_result = await doel.client().post(
        path, json={"resultaat": "SessieValide", "routeringskenmerk": bron.routeringskenmerk}
    )
    assert_problem(bad_result, 422, "OngeldigResultaat")
    not_bron = await doel.client().post(
        path, json={"resultaat": "GeenInzage", "routeringskenmerk": doel.routeringskenmerk}
    )
    assert_problem(not_bron, 404, "OnbekendAanleverpunt")
    assert await stored_state(tc, sessie_id) == ("GRANTED", None)
    ok = await doel.client().post(
        path,
        json={"resultaat": "DossierNogNietGereed", "routeringskenmerk": bron.routeringskenmerk},
    )
    assert ok.status_code == 200
    assert await stored_state(tc, sessie_id) == ("CLOSED", "DossierNogNietGereed")


# --- input discipline -------------------------------------------------------------------------


def closing(bron: Party) -> dict[str, str]:
    return {"resultaat": "DossierNietGevonden", "routeringskenmerk": bron.routeringskenmerk}


async def test_exactly_one_search_key_and_known_kinds_and_well_formed_ids(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    koppel = await open_session(
        doel, bron, zoeksleutel=None, koppelsleutel="0F8FAD5B-D9CB-469F-A165-70867728950E"
    )
    # A koppelsleutel names only an swv-dossier (rule 10); an overstapdossier needs a zoeksleutel.
    assert_problem(koppel, 422, "SleutelPastNietBijOverdrachtsoort")
    both = await open_session(doel, bron, koppelsleutel="0F8FAD5B-D9CB-469F-A165-70867728950E")
    assert_problem(both, 422, "ZoeksleutelOfKoppelsleutel")
    neither = await open_session(doel, bron, zoeksleutel=None)
    assert_problem(neither, 422, "ZoeksleutelOfKoppelsleutel")
    assert_problem(
        await open_session(doel, bron, overdrachtsoort="verhuizing"),
        422,
        "OngeldigeOverdrachtsoort",
    )
    assert_problem(await open_session(doel, bron, bron_brin="1234"), 422, "OngeldigeBrin")
    # Zoeksleutel v1: 43 characters of unpadded base64url; anything else, and the answer
    # says what is wrong without repeating the value.
    for malformed in (
        "kort",
        ZOEKSLEUTEL + "=",
        ZOEKSLEUTEL[:-1] + "+",
        ZOEKSLEUTEL[:-1] + "B",  # 43 characters, but not exactly 32 bytes
        "3f9a1c2b7d4e5f60718293a4b5c6d7e83f9a1c2b7d4e5f60718293a4b5c6d7e8",  # hex SHA-256
    ):
        refused = await open_session(doel, bron, zoeksleutel=malformed)
        assert_problem(refused, 422, "OngeldigeZoeksleutel")
        assert malformed not in refused.text
        assert "43 characters of unpadded base64url" in refused.json()["title"]
    # Any malformed sessie_id, however long (braces, a URN), on a plain route or not.
    some_id = str(uuid.uuid4())
    for malformed in ("not-a-uuid", f"{{{some_id}}}", f"urn:uuid:{some_id}"):
        for route in ("check", "close"):
            body = check_body(doel) if route == "check" else closing(bron)
            refused = await bron.client().post(f"/v1/sessions/{malformed}/{route}", json=body)
            assert_problem(refused, 422, "OngeldigeSessieId")
    extra = await open_session(doel, bron, bsn="unexpected")
    assert_problem(extra, 422, "OngeldigeInvoer")
    not_json = await doel.client().post(
        "/v1/sessions", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(not_json, 422, "OngeldigeInvoer")
    assert await tc.store.sessions.count() >= 1


# --- rule 7: no clear pupil numbers; only the HMAC is stored ---------------------------------


async def test_rule_7_clear_pupil_numbers_are_refused_in_any_field(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    before = await tc.store.sessions.count()
    for bsn_like in ("662460613", "101211151"):  # a BSN and an onderwijsnummer
        assert_problem(
            await open_session(doel, bron, zoeksleutel=bsn_like), 422, "PgnNietToegestaan"
        )
        padded = await open_session(doel, bron, zoeksleutel=f"bsn-{bsn_like}-xxxxxxxx")
        assert_problem(padded, 422, "PgnNietToegestaan")
    # In a free-text field, in the ways people write it (issue #10, point 8).
    for written in (
        "662460613",
        "6624.60.613",
        "662 460 613",
        "leerling 662-460-613",
        "66246061312032011",
    ):
        in_header = await doel.client().post(
            "/v1/sessions", json=session_body(bron), headers={"Idempotency-Key": written}
        )
        assert_problem(in_header, 422, "PgnNietToegestaan")
        assert written not in in_header.text
    assert await tc.store.sessions.count() == before
    # Nine digits that fail both tests are not pupil numbers.
    nine = await doel.client().post(
        "/v1/sessions", json=session_body(bron), headers={"Idempotency-Key": "k-123456789"}
    )
    assert nine.status_code == 201


async def test_a_well_formed_zoeksleutel_is_never_taken_for_a_pupil_number(
    tc: TrafficCenterUnderTest,
) -> None:
    """A digit run inside a keyed hash is chance: such pupils must still be transferable."""
    doel, bron = await tc.world.schools("PO", "PO")
    for pgn in ("662460613", "101211151"):
        key = f"zk{pgn}" + "x" * 31 + "A"  # 43 characters of base64url, a BSN inside
        granted = await open_session(doel, bron, zoeksleutel=key)
        assert granted.status_code == 201, granted.text
        sessie_id = granted.json()["sessie_id"]
        checked = await bron.client().post(
            f"/v1/sessions/{sessie_id}/check", json=check_body(doel, zoeksleutel=key)
        )
        assert checked.status_code == 200, checked.text


async def test_rule_7_the_store_holds_only_the_hmac_of_the_zoeksleutel(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    marker = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    assert (await open_session(doel, bron, zoeksleutel=marker)).status_code == 201
    dump = await dump_database(tc)
    assert marker not in dump
    assert marker.lower() not in dump.lower()
    assert ZOEKSLEUTEL not in dump


# --- idempotency and concurrency --------------------------------------------------------------


async def test_50_parallel_creations_with_10_keys_make_exactly_10_sessions(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    keys = [f"key-{uuid.uuid4()}" for _ in range(10)]
    clients = [doel.new_client() for _ in range(10)]

    async def create(i: int) -> httpx.Response:
        return await clients[i % 10].post(
            "/v1/sessions", json=session_body(bron), headers={"Idempotency-Key": keys[i % 10]}
        )

    responses = await asyncio.gather(*(create(i) for i in range(50)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    ids_by_key: dict[str, set[str]] = {}
    for i, response in enumerate(responses):
        ids_by_key.setdefault(keys[i % 10], set()).add(response.json()["sessie_id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    mine = await tc.store.sessions.involving(doel.routeringskenmerk)
    assert len(mine) == 10
    assert {s.sessie_id for s in mine} == set().union(*ids_by_key.values())


async def test_idempotency_key_reused_for_another_request_is_refused(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("PO", "PO")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await doel.client().post("/v1/sessions", json=session_body(bron), headers=headers)
    replay = await doel.client().post("/v1/sessions", json=session_body(bron), headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json()["sessie_id"] == first.json()["sessie_id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Rule 7: the key is the caller's free text; the store keeps only its HMAC.
    assert headers["Idempotency-Key"] not in await dump_database(tc)
    other = await doel.client().post(
        "/v1/sessions", json=session_body(bron, zoeksleutel=OTHER_ZOEKSLEUTEL), headers=headers
    )
    assert_problem(other, 422, "IdempotencyKeyHergebruikt")


async def test_an_empty_idempotency_key_is_no_key(tc: TrafficCenterUnderTest) -> None:
    """Kept as a key, an empty one (or blanks: HTTP trims them away) made every later open of
    the endpoint a replay of the first, or a reuse refused: it is refused itself."""
    doel, bron = await tc.world.schools("PO", "PO")
    headers = {"Idempotency-Key": ""}
    refused = await doel.client().post("/v1/sessions", json=session_body(bron), headers=headers)
    assert_problem(refused, 422, "OngeldigeInvoer")
    assert refused.json()["errors"][0]["loc"] == ["header", "idempotency-key"]


# --- the endpoint overview ------------------------------------------------------------------


async def test_endpoint_overview_lists_active_endpoints_with_filters(
    tc: TrafficCenterUnderTest,
) -> None:
    asking, listed, hidden = await tc.world.schools("PO", "VO", "VO")
    await tc.registry.deactivate_endpoint(hidden.routeringskenmerk)
    client = asking.client()
    by_brin = await client.get("/v1/endpoints", params={"brin": listed.brin})
    assert by_brin.status_code == 200
    assert [e["routeringskenmerk"] for e in by_brin.json()["endpoints"]] == [
        listed.routeringskenmerk
    ]
    assert (await client.get("/v1/endpoints", params={"brin": hidden.brin})).json() == {
        "endpoints": []
    }
    by_key = await client.get(
        "/v1/endpoints", params={"routeringskenmerk": listed.routeringskenmerk, "kind": "OV"}
    )
    assert len(by_key.json()["endpoints"]) == 1
    assert_problem(
        await client.get("/v1/endpoints", params={"kind": "XX"}), 422, "OngeldigeSoortAanleverpunt"
    )
    everything = await client.get("/v1/endpoints")
    routes = {e["routeringskenmerk"] for e in everything.json()["endpoints"]}
    assert listed.routeringskenmerk in routes
    assert hidden.routeringskenmerk not in routes
