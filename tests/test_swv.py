"""The SWV flow (rule 10) over real mTLS: a school tells its samenwerkingsverband, the SWV
fetches the dossier by koppelsleutel and gives feedback once; and every refusal around it."""

from __future__ import annotations

import asyncio
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.support.dumps import dump_database
from tests.support.las import LasParty, LasWorld, letters, scenario_key
from tests.support.messages import open_session
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.domain.audit import AuditType, Phase
from traffic_center.domain.las_contract import DOSSIER_NAMESPACE, RELEASE_HEADER

# Every answer the tests here get is one openapi.yaml declares (tests/support/contract.py).
pytestmark = pytest.mark.usefixtures("answers_documented")

KOPPELSLEUTEL = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
NS = "{" + DOSSIER_NAMESPACE + "}"


@pytest.fixture(scope="module")
async def school(las: LasWorld) -> LasParty:
    """A primary school whose reference LAS plays the school of the SWV flow."""
    return await las.school("PO")


@pytest.fixture(scope="module")
async def swv(las: LasWorld) -> LasParty:
    """A samenwerkingsverband whose SWV endpoint is a reference LAS."""
    return await las.school("SWV", kind="SWV")


@pytest.fixture(scope="module")
async def vo_school(las: LasWorld) -> LasParty:
    return await las.school("VO")


def problem_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, str(response.json().get("code"))


async def melden(school: LasParty, swv: Party, *, scenario: str = "gereed") -> str:
    """The school tells its SWV; its LAS learns which pupil the koppelsleutel stands for."""
    answer = await school.party.client().post(
        "/v1/swv/notifications", json={"doel_routeringskenmerk": swv.routeringskenmerk}
    )
    assert answer.status_code == 200, answer.text
    koppelsleutel = str(answer.json()["koppelsleutel"])
    school.server.swv_cases.add(koppelsleutel, scenario_key(scenario))
    return koppelsleutel


async def swv_session(
    swv: Party, school: Party, koppelsleutel: str, **extra: Any
) -> httpx.Response:
    body = {
        "bron_brin": school.brin,
        "overdrachtsoort": "swv-dossier",
        "koppelsleutel": koppelsleutel,
        **extra,
    }
    return await swv.client().post("/v1/sessions", json=body)


async def feedback(swv: Party, koppelsleutel: str, text: str = "toelaatbaar") -> httpx.Response:
    return await swv.client().post(
        "/v1/swv/feedback", json={"koppelsleutel": koppelsleutel, "terugkoppeling": text}
    )


async def test_the_swv_flow_end_to_end(
    tc: TrafficCenterUnderTest, school: LasParty, swv: LasParty
) -> None:
    # 1. meldenNotificatieRequest to the SWV: a koppelsleutel, relayed to the SWV endpoint.
    answer = await school.party.client().post(
        "/v1/swv/notifications", json={"doel_routeringskenmerk": swv.routeringskenmerk}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["resultaat"] == "NotificatieOntvangen"
    koppelsleutel = answer.json()["koppelsleutel"]
    assert KOPPELSLEUTEL.fullmatch(koppelsleutel)
    school.server.swv_cases.add(koppelsleutel, scenario_key("gereed"))
    received = [n for n in swv.server.notifications.received if n.koppelsleutel == koppelsleutel]
    assert len(received) == 1
    assert (received[0].sessie_id, received[0].bron_brin, received[0].bron_routeringskenmerk) == (
        None,
        school.brin,
        school.routeringskenmerk,
    )

    # 2. The SWV opens an swv-dossier session with it: the bron is that school endpoint.
    granted = await swv_session(swv.party, school.party, koppelsleutel)
    assert granted.status_code == 201, granted.text
    sessie_id = granted.json()["sessie_id"]
    assert [e["routeringskenmerk"] for e in granted.json()["bron_endpoints"]] == [
        school.routeringskenmerk
    ]

    # Peer to peer, the school checks the session with the koppelsleutel: doel sector SWV.
    checked = await school.party.client().post(
        f"/v1/sessions/{sessie_id}/check",
        json={
            "doel_brin": swv.brin,
            "doel_routeringskenmerk": swv.routeringskenmerk,
            "overdrachtsoort": "swv-dossier",
            "koppelsleutel": koppelsleutel,
        },
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["doel_sector"] == "SWV"

    # 3. The dossier is relayed with the koppelsleutel (a zoeksleutel does not fit the kind).
    path = f"/v1/sessions/{sessie_id}/dossier"
    wrong_key = await swv.party.client().post(
        path,
        json={"routeringskenmerk": school.routeringskenmerk, "zoeksleutel": scenario_key("gereed")},
    )
    assert problem_code(wrong_key) == (422, "SleutelPastNietBijOverdrachtsoort")
    dossier = await swv.party.client().post(
        path, json={"routeringskenmerk": school.routeringskenmerk, "koppelsleutel": koppelsleutel}
    )
    assert dossier.status_code == 200, dossier.text
    assert RELEASE_HEADER not in dossier.headers  # no parent rule for a school → SWV dossier
    assert ET.fromstring(dossier.content).findtext(f"{NS}metadata/{NS}overstap") == "POSWV"
    closed = await swv.party.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": school.routeringskenmerk},
    )
    assert closed.status_code == 200, closed.text

    # 4. The feedback goes to the school endpoint, once; its text is relayed, never stored.
    with_pgn = await feedback(swv.party, koppelsleutel, "leerling 662460613 toelaatbaar")
    assert problem_code(with_pgn) == (422, "PgnNietToegestaan")  # refused, so not yet given
    canary = letters(24)
    given = await feedback(swv.party, koppelsleutel, f"toelaatbaar {canary}")
    assert given.status_code == 200, given.text
    assert given.json()["resultaat"] == "TerugkoppelingOntvangen"
    got = [f for f in school.server.swv_cases.feedback if f.koppelsleutel == koppelsleutel]
    assert [(f.swv_brin, f.swv_routeringskenmerk) for f in got] == [
        (swv.brin, swv.routeringskenmerk)
    ]
    again = await feedback(swv.party, koppelsleutel)
    assert problem_code(again) == (409, "TerugkoppelingAlGegeven")
    assert (
        len([f for f in school.server.swv_cases.feedback if f.koppelsleutel == koppelsleutel]) == 1
    )

    # On the record: both relays in two phases, filed under both parties; rule 7: neither
    # the koppelsleutel nor the feedback's text is in the database.
    records = await tc.store.audit.for_party(
        swv.routeringskenmerk, since=None, until=None, after_id=0, limit=1000
    )
    kinds = {(r.record.type, r.record.phase, r.record.result) for r in records}
    assert (AuditType.SWV_NOTIFICATION, Phase.FINAL, "NotificatieOntvangen") in kinds
    assert (AuditType.SWV_NOTIFICATION, Phase.STARTED, "Gestart") in kinds
    assert (AuditType.FEEDBACK, Phase.FINAL, "TerugkoppelingOntvangen") in kinds
    assert (AuditType.FEEDBACK, Phase.FINAL, "TerugkoppelingAlGegeven") in kinds
    dump = await dump_database(tc)
    assert canary not in dump
    assert koppelsleutel not in dump
    assert koppelsleutel.lower() not in dump


async def test_feedback_the_school_did_not_confirm_may_be_sent_again(
    las: LasWorld, swv: LasParty
) -> None:
    gone = await las.school("VO")
    koppelsleutel = await melden(gone, swv.party)
    # The school's LAS is down: the feedback cannot be delivered.
    las.servers.remove(gone.server)
    await asyncio.to_thread(gone.server.stop)
    failed = await feedback(swv.party, koppelsleutel)
    assert failed.status_code in (502, 504), failed.text
    # Not given, so not "already given": the same answer again, not TerugkoppelingAlGegeven.
    retried = await feedback(swv.party, koppelsleutel)
    assert retried.status_code == failed.status_code
    assert problem_code(retried)[1] != "TerugkoppelingAlGegeven"


async def test_a_notification_to_an_swv_goes_only_from_a_school_to_an_swv_endpoint(
    tc: TrafficCenterUnderTest, school: LasParty, swv: LasParty, vo_school: LasParty
) -> None:
    def to(target: Party) -> dict[str, str]:
        return {"doel_routeringskenmerk": target.routeringskenmerk}

    client = school.party.client()
    ordinary = await client.post("/v1/swv/notifications", json=to(vo_school.party))
    assert problem_code(ordinary) == (403, "AanleverpuntVerkeerdeSoort")
    from_swv = await swv.party.client().post("/v1/swv/notifications", json=to(swv.party))
    assert problem_code(from_swv) == (403, "AanleverpuntVerkeerdeSoort")
    # A school's own SWV-kind endpoint is not a samenwerkingsverband's.
    schools_swv = await tc.world.school("PO", kind="SWV")
    not_an_swv = await client.post("/v1/swv/notifications", json=to(schools_swv))
    assert problem_code(not_an_swv) == (403, "GeenRelatieMetDoel")
    unknown = await client.post(
        "/v1/swv/notifications", json={"doel_routeringskenmerk": "00000007999999999999"}
    )
    assert problem_code(unknown) == (404, "OnbekendAanleverpunt")
    assert not [n for n in vo_school.server.notifications.received if n.koppelsleutel]


async def test_an_unknown_or_someone_elses_koppelsleutel_does_not_exist(
    tc: TrafficCenterUnderTest, school: LasParty, swv: LasParty
) -> None:
    other_swv = await tc.world.school("SWV", kind="SWV")
    koppelsleutel = await melden(school, swv.party)
    made_up = str(uuid.uuid4()).upper()
    for caller, key in ((swv.party, made_up), (other_swv, koppelsleutel)):
        assert problem_code(await swv_session(caller, school.party, key)) == (
            404,
            "KoppelsleutelOnbekend",
        )
        assert problem_code(await feedback(caller, key)) == (404, "KoppelsleutelOnbekend")
    # Another school's BRIN with this koppelsleutel: not the triple either.
    other_school = await tc.world.school("PO")
    assert problem_code(await swv_session(swv.party, other_school, koppelsleutel)) == (
        404,
        "KoppelsleutelOnbekend",
    )
    # The rightful SWV still can, and gives its feedback once.
    assert (await swv_session(swv.party, school.party, koppelsleutel)).status_code == 201
    assert (await feedback(swv.party, koppelsleutel)).status_code == 200


async def test_an_overstapdossier_never_goes_through_an_swv_endpoint(
    tc: TrafficCenterUnderTest, school: LasParty, swv: LasParty, vo_school: LasParty
) -> None:
    # An SWV endpoint as doel of an overstapdossier: a samenwerkingsverband's, or a school's.
    schools_swv_doel = await tc.world.school("VO", kind="SWV")
    for doel in (swv.party, schools_swv_doel):
        as_doel = await open_session(doel, school.party, zoeksleutel=scenario_key("gereed"))
        assert problem_code(as_doel) == (403, "AanleverpuntVerkeerdeSoort")
    # A school's SWV-kind endpoint named as the bron of an overstapdossier or binnen-BRIN one.
    schools_swv = await tc.world.school("PO", brin=school.brin, add_school=False, kind="SWV")
    for soort, doel in (("overstapdossier", vo_school.party), ("overdrachtbinnenbrin", None)):
        asker = doel or await tc.world.school("PO", brin=school.brin, add_school=False)
        named = await open_session(
            asker,
            school.party,
            overdrachtsoort=soort,
            bron_routeringskenmerk=schools_swv.routeringskenmerk,
            zoeksleutel=scenario_key("gereed"),
        )
        assert problem_code(named) == (403, "AanleverpuntVerkeerdeSoort"), soort
    # Not named: only the school's OV endpoints are offered.
    offered = await open_session(vo_school.party, school.party, zoeksleutel=scenario_key("gereed"))
    assert offered.status_code == 201
    assert schools_swv.routeringskenmerk not in {
        e["routeringskenmerk"] for e in offered.json()["bron_endpoints"]
    }


async def test_a_school_cannot_ask_an_swv_dossier_of_another_school(
    school: LasParty, vo_school: LasParty
) -> None:
    """Hardening row 7: a PO doel named a VO school's ordinary endpoint in an swv-dossier
    session and got the dossier relayed without a release header."""
    started = vo_school.server.counters.snapshot().started
    common = {
        "overdrachtsoort": "swv-dossier",
        "bron_routeringskenmerk": vo_school.routeringskenmerk,
    }
    with_koppelsleutel = await open_session(
        school.party,
        vo_school.party,
        zoeksleutel=None,
        koppelsleutel=str(uuid.uuid4()).upper(),
        **common,
    )
    assert problem_code(with_koppelsleutel) == (403, "AanleverpuntVerkeerdeSoort")
    with_zoeksleutel = await open_session(
        school.party, vo_school.party, zoeksleutel=scenario_key("gereed"), **common
    )
    assert problem_code(with_zoeksleutel) == (422, "SleutelPastNietBijOverdrachtsoort")
    assert vo_school.server.counters.snapshot().started == started  # nothing was relayed
