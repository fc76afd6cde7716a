"""The reference LAS over real mutual TLS: every 00YY scenario, the faults, the CLI, the doel."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gegevensset import load_schema, xsd_errors
from tests.support.las import PUPILS, scenario_key
from tests.support.processes import clean_env
from tests.support.pupils import new_pgn, zoeksleutel_of
from traffic_center.cli.main import main
from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import (
    Overdrachtsoort,
    Sector,
    derive_zoeksleutel,
    looks_like_pupil_number,
)
from traffic_center.domain.las_contract import (
    DOSSIER_NAMESPACE,
    RELEASE_HEADER,
    SESSION_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.domain.rules import ParentRelease
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import DoelClient, TrafficCenterRefused
from traffic_center.las.dossier import (
    CHUNK_BYTES,
    DossierTemplate,
    generated_chunks,
    generated_digest,
    measured_dossier,
)
from traffic_center.las.gegevensset import DossierSpec
from traffic_center.las.pupils import TEST_PUPILS, TEST_SCHEME_KEY, Roster, pupil_with
from traffic_center.las.scenarios import (
    MAX_GENERATED_BYTES,
    ScenarioKind,
    parse_scenario,
)
from traffic_center.las.server import LasServer
from traffic_center.pki.ca import CertificateAuthority, write_issued

DOEL_ROUTERINGSKENMERK = "00000007000012000001"
BRON_ROUTERINGSKENMERK = "00000007000000000001"
FAKE_TC = "https://tc.test"
# What the module's PO LAS serves a VO doel by default: its dossier for a POVO overstap.
PO_TO_VO = DossierSpec(
    brin="00YY",
    bron_sector=Sector.PO,
    doel_sector=Sector.VO,
    overdrachtsoort=Overdrachtsoort.OVERSTAPDOSSIER,
    release=ParentRelease.INZAGE,
)
NS = f"{{{DOSSIER_NAMESPACE}}}"
FILE_PUPIL = "999990081"  # dossiers/<PGN>.xml: this pupil's dossier comes from a file
KEY = zoeksleutel_of(pupil_with("gereed"))  # test school 00YY's ready pupil


# --- certificates and servers ----------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]
    relay: tuple[Path, Path]
    school: tuple[Path, Path]

    def context(self, holder: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if holder is not None:
            context.load_cert_chain(str(holder[0]), str(holder[1]))
        return context


def _issue(issued: Any, prefix: Path) -> tuple[Path, Path]:
    key, pem = write_issued(issued, prefix)
    return pem, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("las-pki")
    ca = CertificateAuthority.create(directory / "ca")
    school = ca.issue_client_certificate(
        routeringskenmerk=BRON_ROUTERINGSKENMERK, brin="00YY", name="Testschool 00YY"
    )
    return Pki(
        ca=directory / "ca" / "ca.pem",
        server=_issue(ca.issue_server_certificate(hosts=["127.0.0.1"]), directory / "server"),
        relay=_issue(ca.issue_relay_certificate(), directory / "relay"),
        school=_issue(school, directory / "school"),
    )


class FakeTrafficCenter:
    """Receives the LAS's meldenNotificatieRequest through an httpx transport seam."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, json.loads(request.content)))
        return httpx.Response(202, json={"resultaat": "NotificatieOntvangen"})


@pytest.fixture(scope="module")
def fake_tc() -> FakeTrafficCenter:
    return FakeTrafficCenter()


@pytest.fixture(scope="module")
def events() -> list[dict[str, object]]:
    return []


@pytest.fixture(scope="module")
def dossiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dossiers")
    (directory / f"{FILE_PUPIL}.xml").write_bytes(b"<dossier>uit een bestand</dossier>\n")
    # Not named by a PGN: never served, whatever zoeksleutel is asked.
    (directory / "eigen-dossier-0001.xml").write_bytes(b"<dossier>niet</dossier>\n")
    return directory


@pytest.fixture(scope="module")
def las(
    pki: Pki, fake_tc: FakeTrafficCenter, events: list[dict[str, object]], dossiers: Path
) -> Iterator[LasServer]:
    """A PO school's LAS that notifies a fake TC; shared by the module."""
    config = LasConfig(
        cert=pki.server[0],
        key=pki.server[1],
        ca=pki.ca,
        dossiers=dossiers,
        tc_url=FAKE_TC,
        notify_after=0.3,
    )
    server = LasServer(
        config,
        on_event=events.append,
        tc_transport=httpx.MockTransport(fake_tc.handle),
        pupils=PUPILS,
    )
    with server.start():
        yield server


@pytest.fixture(scope="module")
def vo_las(pki: Pki) -> Iterator[LasServer]:
    """A VO school's LAS with no TC to notify."""
    config = LasConfig(
        cert=pki.server[0],
        key=pki.server[1],
        ca=pki.ca,
        sector=Sector.VO,
        notify_after=0.2,
    )
    with LasServer(config, pupils=PUPILS).start() as server:
        yield server


def _client(pki: Pki, holder: tuple[Path, Path] | None, server: LasServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, verify=pki.context(holder), timeout=10)


@pytest.fixture(scope="module")
async def relay(pki: Pki, las: LasServer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(pki, pki.relay, las) as client:
        yield client


def ask(zoeksleutel: str, *, doel_sector: str = "VO", **overrides: Any) -> dict[str, Any]:
    body = {
        "sessie_id": str(uuid.uuid4()),
        "zoeksleutel": zoeksleutel,
        "overdrachtsoort": "overstapdossier",
        "aanvraagdatum": None,
        "doel_brin": "12AB",
        "doel_routeringskenmerk": DOEL_ROUTERINGSKENMERK,
        "doel_sector": doel_sector,
    }
    return {**body, **overrides}


def headers_for(body: dict[str, Any]) -> dict[str, str]:
    return {SESSION_HEADER: body["sessie_id"], TRANSACTION_HEADER: str(uuid.uuid4())}


async def post_dossier(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/dossier", json=body, headers=headers_for(body))


async def stream_digest(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[httpx.Response, int, str]:
    digest, size = hashlib.sha256(), 0
    async with client.stream("POST", "/dossier", json=body, headers=headers_for(body)) as answer:
        async for chunk in answer.aiter_raw():
            digest.update(chunk)
            size += len(chunk)
    return answer, size, digest.hexdigest()


async def drain(answer: httpx.Response, sizes: list[int]) -> None:
    async for chunk in answer.aiter_raw():
        sizes.append(len(chunk))


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


# --- the dossier scenarios -------------------------------------------------------------------


async def test_gereed_streams_a_realistic_dossier_with_the_release_attested(
    relay: httpx.AsyncClient,
) -> None:
    answer, size, sha = await stream_digest(relay, ask(scenario_key("gereed")))

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/xml"
    assert answer.headers[RELEASE_HEADER] == "inzage"  # a PO bron, a VO doel
    expected = measured_dossier(DossierTemplate.STANDARD, PO_TO_VO)
    assert (size, sha) == (expected.size, expected.sha256)
    assert int(answer.headers["content-length"]) == size
    assert 150_000 < size < 200_000


async def test_the_realistic_dossier_is_oso_xml_without_a_pupil_number(
    relay: httpx.AsyncClient,
) -> None:
    answer = await post_dossier(relay, ask(scenario_key("gereed")))

    root = ET.fromstring(answer.content)
    sections = [child.tag.removeprefix(NS) for child in root]
    assert root.tag == f"{NS}dossier"
    assert sections == ["metadata", "overdrachtsoort", "inzage", "huidigeschool"]
    assert root.findtext(f"{NS}metadata/{NS}overstap") == "POVO"
    assert len(root.findall(f"{NS}huidigeschool/{NS}leerling/{NS}overigdocumentlijst/*")) == 3
    text_before_attachments = answer.text.split("<overigdocumentlijst>")[0]
    assert not looks_like_pupil_number(text_before_attachments)
    assert root.find(f".//{NS}bsn") is None


async def test_the_release_follows_the_sector_pair(
    pki: Pki, relay: httpx.AsyncClient, vo_las: LasServer
) -> None:
    key = scenario_key("gereed")
    async with _client(pki, pki.relay, vo_las) as vo_relay:
        vo_to_vo = await post_dossier(vo_relay, ask(key, doel_sector="VO"))
    po_to_swv = await post_dossier(relay, ask(key, doel_sector="SWV"))

    assert vo_to_vo.headers[RELEASE_HEADER] == "toestemming"
    assert po_to_swv.status_code == 200
    assert RELEASE_HEADER not in po_to_swv.headers  # no parent rule for that pair
    # The dossier says what the header attests: consent (VO→VO); nothing stated for the SWV.
    consent = ET.fromstring(vo_to_vo.content)
    assert consent.findtext(f"{NS}inzage/{NS}inzage") == "true"
    assert consent.findtext(f"{NS}inzage/{NS}toestemming") == "Ja"
    swv = ET.fromstring(po_to_swv.content)
    assert swv.findtext(f"{NS}metadata/{NS}overstap") == "POSWV"
    assert swv.find(f"{NS}inzage") is None
    assert swv.findtext(f".//{NS}cat_ouderinzage") == "OPT-UIT"


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        ("geeninzage", 403, "GeenInzage"),
        ("geentoestemming", 403, "GeenToestemming"),
        ("verouderd", 409, "DossierVerouderd"),
        ("onbekend", 404, "DossierNietGevonden"),  # a pupil this LAS does not hold
    ],
)
async def test_refusals_are_problems_with_the_oso_code(
    relay: httpx.AsyncClient, scenario: str, status: int, code: str
) -> None:
    answer = await post_dossier(relay, ask(scenario_key(scenario)))

    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["title"]
    assert problem["detail"]
    assert problem["type"].endswith(code)


async def test_zondervrijgave_serves_the_dossier_without_the_release_header(
    relay: httpx.AsyncClient,
) -> None:
    answer = await post_dossier(relay, ask(scenario_key("zondervrijgave")))

    assert answer.status_code == 200
    assert b"<leerling>" in answer.content
    assert RELEASE_HEADER not in answer.headers
    # Nothing attested, and the dossier agrees: the parents have not inspected it.
    inzage = ET.fromstring(answer.content).find(f"{NS}inzage")
    assert inzage is not None
    assert inzage.findtext(f"{NS}inzage") == "false"


async def test_bijlagen_is_a_dossier_of_several_megabytes(relay: httpx.AsyncClient) -> None:
    answer = await post_dossier(relay, ask(scenario_key("bijlagen")))

    assert answer.status_code == 200
    assert 5_500_000 < len(answer.content) < 6_500_000
    assert answer.content.count(b"<document>") == 30
    expected = measured_dossier(DossierTemplate.ATTACHMENTS, PO_TO_VO)
    assert hashlib.sha256(answer.content).hexdigest() == expected.sha256


@pytest.mark.parametrize(
    ("scenario", "size", "marker", "doel_sector"),
    [
        ("gereed", None, None, "VO"),
        ("gereed", None, None, "SWV"),
        ("zondervrijgave", None, None, "VO"),
        ("bijlagen", None, None, "PO"),
        ("grootte", 4_000_000, "Kenmerk1", "VO"),
        ("liegt", 100_000, None, "PO"),
    ],
)
async def test_every_served_dossier_is_valid_against_the_oso_xsd(
    relay: httpx.AsyncClient, scenario: str, size: int | None, marker: str | None, doel_sector: str
) -> None:
    key = scenario_key(scenario, size, marker=marker)
    answer = await post_dossier(relay, ask(key, doel_sector=doel_sector))

    assert answer.status_code == 200
    assert xsd_errors(load_schema(), answer.content) == []


@pytest.mark.parametrize("size", [0, 10, 1000, 3 * 1024 * 1024 + 7])
async def test_grootte_serves_exactly_n_bytes_with_the_known_digest(
    relay: httpx.AsyncClient, size: int
) -> None:
    answer, received, sha = await stream_digest(relay, ask(scenario_key("grootte", size)))

    assert answer.status_code == 200
    assert int(answer.headers["content-length"]) == size
    assert received == size
    assert sha == generated_digest(size)


async def test_the_marker_is_embedded_as_a_canary(relay: httpx.AsyncClient) -> None:
    answer = await post_dossier(relay, ask(scenario_key("grootte", 200_000, marker="Canary42xyz")))

    assert answer.content.count(b"Canary42xyz") == 1
    assert len(answer.content) == 200_000
    assert hashlib.sha256(answer.content).hexdigest() == generated_digest(200_000, "Canary42xyz")
    assert generated_digest(200_000, "Canary42xyz") != generated_digest(200_000)


async def test_liegt_streams_chunked_without_a_length(relay: httpx.AsyncClient) -> None:
    answer, received, sha = await stream_digest(relay, ask(scenario_key("liegt", 300_000)))

    assert "content-length" not in answer.headers
    assert answer.headers["transfer-encoding"] == "chunked"
    assert (received, sha) == (300_000, generated_digest(300_000))


async def test_a_file_in_the_dossiers_directory_is_served_for_its_pupil(
    relay: httpx.AsyncClient,
) -> None:
    answer = await post_dossier(relay, ask(zoeksleutel_of(FILE_PUPIL)))
    others = await post_dossier(relay, ask(scenario_key("onbekend")))

    assert answer.status_code == 200
    assert answer.content == b"<dossier>uit een bestand</dossier>\n"
    assert answer.headers[RELEASE_HEADER] == "inzage"
    assert others.status_code == 404


# --- generated content without a server ------------------------------------------------------


def test_generation_repeats_one_precomputed_block_at_memory_speed() -> None:
    size = 1024**3
    started = time.perf_counter()
    chunks = generated_chunks(size, "m1")
    first, second, third = next(chunks), next(chunks), next(chunks)
    total = len(first) + len(second) + len(third) + sum(len(c) for c in chunks)
    elapsed = time.perf_counter() - started

    assert total == size
    assert second is third  # the same object: nothing is built per chunk
    assert len(second) == CHUNK_BYTES
    assert elapsed < 1.0  # 1 GiB: far above 500 MB/s


def test_a_size_below_the_skeleton_is_its_prefix() -> None:
    tiny = b"".join(generated_chunks(10))
    assert tiny == b"<?xml vers"
    assert b"".join(generated_chunks(0)) == b""


def test_scenarios_parse_as_documented() -> None:
    assert parse_scenario("grootte-1073741824-mABC").size == 1024**3
    assert parse_scenario("grootte-1073741824-mABC").marker == "ABC"
    assert parse_scenario("trickle-5000").kind is ScenarioKind.TRICKLE
    assert parse_scenario("gereed").kind is ScenarioKind.GEREED


@pytest.mark.parametrize(
    "text",
    [
        f"grootte-{MAX_GENERATED_BYTES + 1}",
        "Gereed",
        "gereed-5000",
        "grootte",
        "grootte-veel",
        "onbekend",
        "00YY-gereed-leerling",
    ],
)
def test_a_scenario_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_scenario(text)


async def test_the_roster_finds_a_pupil_by_the_zoeksleutel_the_doel_derives() -> None:
    roster = Roster(TEST_SCHEME_KEY, TEST_PUPILS)
    other_scheme = Roster(bytes(32), TEST_PUPILS)
    unused = httpx.MockTransport(lambda request: httpx.Response(500))
    async with DoelClient(FAKE_TC, transport=unused) as doel:
        gereed = pupil_with("gereed")
        assert roster.scenario_for(doel.zoeksleutel(gereed)).kind is ScenarioKind.GEREED
        assert other_scheme.scenario_for(doel.zoeksleutel(gereed)).kind is ScenarioKind.ONBEKEND
        assert roster.scenario_for(doel.zoeksleutel(new_pgn())).kind is ScenarioKind.ONBEKEND
        assert roster.enroll("999990093", "verouderd") == doel.zoeksleutel("999990093")
        assert roster.scenario_for(doel.zoeksleutel("999990093")).kind is ScenarioKind.VEROUDERD
        with pytest.raises(ValueError, match="9 ASCII digits"):
            await doel.open_session("00YY", "6624.60.613")  # refused before anything is sent
    with pytest.raises(InvalidInput):
        roster.enroll("12345678", "gereed")  # eight digits: not a PGN
    with pytest.raises(ValueError, match="32 bytes"):
        DoelClient(FAKE_TC, transport=unused, scheme_key=b"k")


# --- who may call, and what --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dossier", "/notification"])
async def test_a_school_certificate_is_refused(pki: Pki, las: LasServer, path: str) -> None:
    before = las.counters.snapshot().started
    async with _client(pki, pki.school, las) as school:
        answer = await school.post(path, json=ask(scenario_key("gereed")))

    assert answer.status_code == 403
    assert answer.json()["code"] == "CertificaatGeweigerd"
    assert las.counters.snapshot().started == before


async def test_no_client_certificate_fails_the_handshake(pki: Pki, las: LasServer) -> None:
    async with _client(pki, None, las) as anonymous:
        with pytest.raises(httpx.TransportError):
            await anonymous.post("/dossier", json=ask(scenario_key("gereed")))


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {}),
        (json.dumps({k: v for k, v in ask(KEY).items() if k != "doel_sector"}), {}),
        (json.dumps(ask(KEY, doel_sector="MBO")), {}),
        (json.dumps(ask(KEY, aanvraagdatum="14-03-2025")), {}),
        (json.dumps(ask("kort")), {}),
        (json.dumps(ask(KEY + "=")), {}),  # zoeksleutel v1 has no padding
        (json.dumps(ask("662460613")), {}),  # a clear PGN
        (json.dumps(ask(KEY)), {SESSION_HEADER: str(uuid.uuid4())}),
    ],
)
async def test_bad_requests_get_ongeldige_invoer(
    relay: httpx.AsyncClient, content: bytes | str, headers: dict[str, str]
) -> None:
    answer = await relay.post(
        "/dossier", content=content, headers={"content-type": "application/json", **headers}
    )

    assert answer.status_code == 422
    assert answer.json()["code"] == "OngeldigeInvoer"


# --- faults ------------------------------------------------------------------------------------


async def test_afbreken_drops_the_connection_mid_body(
    relay: httpx.AsyncClient, las: LasServer
) -> None:
    aborted = las.counters.snapshot().aborted
    received: list[int] = []
    body = ask(scenario_key("afbreken", 400_000))
    async with relay.stream("POST", "/dossier", json=body) as answer:
        assert answer.headers["content-length"] == "400000"
        with pytest.raises(httpx.RemoteProtocolError):
            await drain(answer, received)

    assert 0 < sum(received) < 400_000
    await las.counters.wait_until(lambda c: c.aborted > aborted)


async def test_hangt_never_answers(pki: Pki, las: LasServer) -> None:
    aborted = las.counters.snapshot().aborted
    async with _client(pki, pki.relay, las) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("/dossier", json=ask(scenario_key("hangt")), timeout=0.3)

    # The LAS notices the caller left and lets go of the request.
    await las.counters.wait_until(lambda c: c.aborted > aborted)


async def test_a_client_leaving_a_trickle_aborts_the_stream(
    pki: Pki, las: LasServer, events: list[dict[str, object]]
) -> None:
    body = ask(scenario_key("trickle", 1_000_000))
    async with (
        _client(pki, pki.relay, las) as doel,
        doel.stream("POST", "/dossier", json=body) as answer,
    ):
        await anext(answer.aiter_raw())  # one slow chunk, then hang up
    assert answer.headers["content-length"] == "1000000"

    snapshot = await las.counters.wait_until(lambda c: c.in_progress == 0 and c.aborted > 0)
    await eventually(lambda: any(e.get("sessie_id") == body["sessie_id"] for e in events))
    ended = next(e for e in events if e.get("sessie_id") == body["sessie_id"])
    assert ended["outcome"] == "aborted"
    assert isinstance(ended["bytes"], int)
    assert ended["bytes"] < 1_000_000
    assert snapshot.started == snapshot.completed + snapshot.aborted


async def test_a_client_leaving_a_fast_stream_releases_it(pki: Pki, las: LasServer) -> None:
    aborted = las.counters.snapshot().aborted
    body = ask(scenario_key("grootte", 1024**3))
    async with (
        _client(pki, pki.relay, las) as doel,
        doel.stream("POST", "/dossier", json=body) as answer,
    ):
        await anext(answer.aiter_raw())  # then hang up, 1 GiB short

    await las.counters.wait_until(lambda c: c.aborted > aborted and c.in_progress == 0)


# --- notifications and readiness -------------------------------------------------------------


async def test_a_notification_is_recorded_and_awaitable(
    relay: httpx.AsyncClient, las: LasServer
) -> None:
    sessie_id = str(uuid.uuid4())
    waiting = asyncio.create_task(las.notifications.wait_for(sessie_id, timeout=5))
    await asyncio.sleep(0.05)  # the waiter is registered before the notification arrives
    answer = await relay.post(
        "/notification",
        json={
            "sessie_id": sessie_id,
            "bron_brin": "34CD",
            "bron_routeringskenmerk": BRON_ROUTERINGSKENMERK,
        },
        headers={TRANSACTION_HEADER: "tx-1"},
    )

    assert answer.status_code == 200
    assert answer.json() == {"resultaat": "NotificatieOntvangen"}
    received = await waiting
    assert (received.sessie_id, received.bron_brin, received.transactie_id) == (
        sessie_id,
        "34CD",
        "tx-1",
    )
    assert (await las.notifications.wait_for(sessie_id, timeout=0.1)) == received
    with pytest.raises(TimeoutError):
        await las.notifications.wait_for(str(uuid.uuid4()), timeout=0.1)


async def test_nietgereed_becomes_ready_and_notifies_the_doel_through_the_tc(
    relay: httpx.AsyncClient, fake_tc: FakeTrafficCenter
) -> None:
    key = scenario_key("nietgereed")
    first = ask(key)
    not_ready = await post_dossier(relay, first)
    still_not_ready = await post_dossier(relay, ask(key))

    assert (not_ready.status_code, not_ready.json()["code"]) == (409, "DossierNogNietGereed")
    assert not_ready.headers["retry-after"] == "1"
    assert still_not_ready.status_code == 409
    await eventually(lambda: len(fake_tc.requests) == 1)
    assert fake_tc.requests[0] == (
        "/v1/notifications",
        {"sessie_id": first["sessie_id"], "doel_routeringskenmerk": DOEL_ROUTERINGSKENMERK},
    )
    ready = await post_dossier(relay, ask(key))
    assert ready.status_code == 200
    assert ready.headers[RELEASE_HEADER] == "inzage"


async def test_nietgereed_without_a_tc_just_becomes_ready(pki: Pki, vo_las: LasServer) -> None:
    async with _client(pki, pki.relay, vo_las) as vo_relay:
        key = scenario_key("nietgereed")
        first = await post_dossier(vo_relay, ask(key))
        await asyncio.sleep(0.3)
        later = await post_dossier(vo_relay, ask(key))

    assert first.status_code == 409
    assert later.status_code == 200
    assert later.headers[RELEASE_HEADER] == "toestemming"


async def test_events_say_what_happened_but_never_the_zoeksleutel(
    relay: httpx.AsyncClient, events: list[dict[str, object]]
) -> None:
    keys = [scenario_key("gereed"), scenario_key("geeninzage")]
    bodies = [ask(key) for key in keys]
    for body in bodies:
        await post_dossier(relay, body)
    sessions = {body["sessie_id"] for body in bodies}

    await eventually(lambda: sessions <= {e.get("sessie_id") for e in events})
    mine = [e for e in events if e.get("sessie_id") in sessions]
    assert {(e["scenario"], e["status"]) for e in mine} == {("gereed", 200), ("geeninzage", 403)}
    logged = json.dumps(events)
    assert not any(key in logged for key in keys)


# --- the CLI -----------------------------------------------------------------------------------


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.decode())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_las_serve_runs_serves_and_stops_on_sigterm(pki: Pki) -> None:
    command = [sys.executable, "-m", "traffic_center", "las", "serve", "--port", "0"]
    command += ["--pupil", "999990111=grootte-5000"]
    command += ["--cert", str(pki.server[0]), "--key", str(pki.server[1]), "--ca", str(pki.ca)]
    process = subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE)
    try:
        lines = _lines(process.stdout)
        listening = json.loads(lines.get(timeout=30))
        assert listening["event"] == "listening"
        with httpx.Client(base_url=listening["url"], verify=pki.context(pki.relay)) as client:
            answer = client.post("/dossier", json=ask(zoeksleutel_of("999990111")))
        served = json.loads(lines.get(timeout=10))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert answer.status_code == 200
    assert len(answer.content) == 5000
    assert served["event"] == "dossier"
    assert (served["scenario"], served["status"], served["bytes"]) == ("grootte", 200, 5000)
    assert listening["scheme_key"] == "test"
    assert zoeksleutel_of("999990111") not in json.dumps(served)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--ca", "{tmp}/nope.pem"], "nope.pem"),
        (["--tc-url", FAKE_TC], "--client-cert"),
        (["--sector", "MBO"], "not a sector"),  # named, never echoed
        (["--path", "oso"], "path"),
        (["--port", "{busy}"], "cannot listen"),
        (["--pupil", "12345678=gereed"], "--pupil"),
        (["--pupil", "999990111"], "PGN=SCENARIO"),
        (["--pupil", "999990111=gereed-5"], "byte count"),
        (["--scheme-key-file", "{tmp}/nope.key"], "nope.key"),
        (["--scheme-key-file", "{short_key}"], "64 hex digits"),
    ],
)
def test_las_serve_refuses_bad_input_with_one_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    base = ["las", "serve", "--cert", str(pki.server[0]), "--key", str(pki.server[1])]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        short_key = tmp_path / "short.key"
        short_key.write_text("00" * 31 + "\n")
        args = [a.format(tmp=tmp_path, busy=port, short_key=short_key) for a in extra]
        ca = [] if "--ca" in args else ["--ca", str(pki.ca)]
        code = main([*base, *ca, *args])
    err = capsys.readouterr().err

    assert code == 2
    assert said in err
    assert err.count("\n") == 1


def test_las_serve_takes_the_scheme_key_from_a_file_or_the_environment(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traffic_center.cli.commands import add_las
    from traffic_center.cli.las import config_from

    parser = argparse.ArgumentParser()
    add_las(parser.add_subparsers())
    base = ["las", "serve", "--cert", str(pki.server[0]), "--key", str(pki.server[1])]
    base += ["--ca", str(pki.ca)]
    key_file = tmp_path / "scheme.key"
    key_file.write_text("ab" * 32 + "\n")
    monkeypatch.delenv("OSO_SCHEME_KEY", raising=False)

    assert config_from(parser.parse_args(base)).scheme_key == TEST_SCHEME_KEY
    from_file = config_from(parser.parse_args([*base, "--scheme-key-file", str(key_file)]))
    assert from_file.scheme_key == bytes.fromhex("ab" * 32)
    monkeypatch.setenv("OSO_SCHEME_KEY", "cd" * 32)
    assert config_from(parser.parse_args(base)).scheme_key == bytes.fromhex("cd" * 32)
    assert "ab" * 32 not in repr(from_file)  # the key never shows in a repr or a log


async def test_a_las_with_its_own_scheme_key_finds_its_pupils_only_under_that_key(
    pki: Pki,
) -> None:
    scheme_key = bytes(range(100, 132))
    events: list[dict[str, object]] = []
    config = LasConfig(cert=pki.server[0], key=pki.server[1], ca=pki.ca, scheme_key=scheme_key)
    with LasServer(config, on_event=events.append).start() as server:
        async with _client(pki, pki.relay, server) as client:
            gereed = pupil_with("gereed")
            own = await post_dossier(client, ask(derive_zoeksleutel(scheme_key, gereed)))
            test_key = await post_dossier(client, ask(zoeksleutel_of(gereed)))

    assert own.status_code == 200
    assert test_key.status_code == 404
    assert events[0]["scheme_key"] == "configured"


# --- the doel client, against a fake TC at the transport seam ---------------------------------


class FakeBroker:
    """The TC's doel-facing routes: a session with two bron endpoints, and what each answers."""

    def __init__(self, answers: dict[str, Callable[[], httpx.Response]]) -> None:
        self.answers = answers
        self.sessie_id = str(uuid.uuid4())
        self.opened: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []
        self.asked: list[dict[str, Any]] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/sessions":
            self.opened.append(body)
            if body["bron_brin"] != "00YY":
                return _problem(404, "VerstrekkerNietBekend")
            endpoints = [{"routeringskenmerk": r, "url": f"https://{r}.test"} for r in self.answers]
            granted = {"sessie_id": self.sessie_id, "bron_endpoints": endpoints}
            return httpx.Response(201, json={**granted, "expires_at": "2030-01-01T00:00:00Z"})
        if request.url.path == f"/v1/sessions/{self.sessie_id}/dossier":
            self.asked.append(body)
            return self.answers[body["routeringskenmerk"]]()
        if request.url.path == f"/v1/sessions/{self.sessie_id}/close":
            self.closed.append(body)
            return httpx.Response(200, json={"state": "CLOSED", **body})
        return _problem(404, "SessieNietGevonden")


def _problem(status: int, code: str) -> httpx.Response:
    problem = {"type": "x", "title": code, "status": status, "code": code, "detail": code}
    return httpx.Response(status, json=problem, headers={TRANSACTION_HEADER: "tx-p"})


def _streamed(size: int) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in generated_chunks(size):
            yield chunk

    headers = {RELEASE_HEADER: "inzage", TRANSACTION_HEADER: "tx-7"}
    return httpx.Response(200, content=body(), headers=headers)


def _broken(size: int) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        yield next(generated_chunks(size))
        raise httpx.RemoteProtocolError("peer closed connection mid-body")

    return httpx.Response(200, content=body())


async def test_transfer_tries_each_bron_until_one_delivers() -> None:
    size = 300_000
    broker = FakeBroker(
        {
            "00000007000000000001": lambda: _problem(409, "DossierNogNietGereed"),
            "00000007000000000002": lambda: _broken(size),
            "00000007000000000003": lambda: _streamed(size),
        }
    )
    async with DoelClient(FAKE_TC, transport=httpx.MockTransport(broker.handle)) as doel:
        record = await doel.transfer("00YY", "662460613", aanvraagdatum="2025-03-01")

    assert record.resultaat == "OverdrachtGeslaagd"
    assert [s.action for s in record.steps] == ["overdrachtRequest"] + ["documentRequest"] * 3 + [
        "afmeldingRequest"
    ]
    assert [s.resultaat for s in record.steps[1:4]] == [
        "DossierNogNietGereed",
        "OverdrachtMislukt",
        "OverdrachtGeslaagd",
    ]
    assert record.fetch is not None
    assert (record.fetch.bytes, record.fetch.sha256) == (size, generated_digest(size))
    assert (record.fetch.vrijgave, record.fetch.transactie_id) == ("inzage", "tx-7")
    assert broker.asked[0]["aanvraagdatum"] == "2025-03-01"
    # The PGN stays with the doel: the TC gets the zoeksleutel v1 (the test vector here).
    assert {body["zoeksleutel"] for body in broker.asked} == {
        "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc"
    }
    assert broker.opened == [
        {
            "bron_brin": "00YY",
            "overdrachtsoort": "overstapdossier",
            "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
        }
    ]
    assert broker.closed == [
        {"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": "00000007000000000003"}
    ]


async def test_a_broken_stream_is_an_incomplete_failed_fetch() -> None:
    broker = FakeBroker({"00000007000000000001": lambda: _broken(200_000)})
    sink = io.BytesIO()
    async with DoelClient(FAKE_TC, transport=httpx.MockTransport(broker.handle)) as doel:
        fetched = await doel.fetch_dossier(
            broker.sessie_id, "00000007000000000001", new_pgn(), sink=sink
        )
        record = await doel.transfer("00YY", new_pgn())

    assert fetched.status == 200
    assert not fetched.complete
    assert fetched.resultaat == "OverdrachtMislukt"
    assert fetched.bytes == CHUNK_BYTES == len(sink.getvalue())
    assert record.resultaat == "OverdrachtMislukt"
    assert broker.closed[-1]["resultaat"] == "OverdrachtMislukt"


async def test_the_best_refusal_closes_the_session_and_a_refused_open_raises() -> None:
    broker = FakeBroker(
        {
            "00000007000000000001": lambda: _problem(404, "DossierNietGevonden"),
            "00000007000000000002": lambda: _problem(409, "DossierNogNietGereed"),
        }
    )
    async with DoelClient(FAKE_TC, transport=httpx.MockTransport(broker.handle)) as doel:
        record = await doel.transfer("00YY", new_pgn())
        with pytest.raises(TrafficCenterRefused) as refused:
            await doel.open_session("99ZZ", new_pgn())

    assert record.resultaat == "DossierNogNietGereed"
    assert broker.closed == [
        {"resultaat": "DossierNogNietGereed", "routeringskenmerk": "00000007000000000002"}
    ]
    assert record.fetch is not None
    assert record.fetch.transactie_id == "tx-p"
    assert (refused.value.status, refused.value.code) == (404, "VerstrekkerNietBekend")
