"""The dossier relay and the notification relay, over real mTLS to real reference LAS servers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dumps import dump_database
from tests.support.las import LasParty, LasWorld, fixed_answer, letters, scenario_key
from tests.support.messages import open_session as request_session
from tests.support.processes import free_port
from tests.support.pupils import new_pgn
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.domain.audit import DOEL_DISCONNECTED, AuditRecord, AuditType, Phase
from traffic_center.las.doel import ClientTLS, DoelClient
from traffic_center.las.dossier import generated_chunks, generated_digest

MB = 1024 * 1024
LIMIT = 8 * MB
READ_TIMEOUT = 1.5
IN_FLIGHT = 8

TRAFFIC_CENTER_SETTINGS = {
    "relay_read_timeout_seconds": READ_TIMEOUT,
    "relay_connect_timeout_seconds": 2.0,
    "relay_max_dossier_bytes": LIMIT,
    "relay_max_in_flight": IN_FLIGHT,
}


@dataclass
class Fetched:
    status: int
    headers: httpx.Headers
    size: int
    sha256: str
    complete: bool
    problem: dict[str, Any] | None

    @property
    def outcome(self) -> tuple[int, str]:
        """The status and the problem's code ("" for a dossier)."""
        return self.status, (self.problem or {}).get("code", "")


@pytest.fixture(scope="module")
async def bron(las: LasWorld) -> LasParty:
    return await las.school("PO")


@pytest.fixture(scope="module")
async def doel(las: LasWorld) -> LasParty:
    return await las.school("VO")


async def open_session(doel: Party, bron: Party, zoeksleutel: str) -> str:
    response = await request_session(doel, bron, zoeksleutel=zoeksleutel)
    assert response.status_code == 201, response.text
    return str(response.json()["sessie_id"])


async def fetch(
    doel: Party,
    sessie_id: str,
    routeringskenmerk: str,
    zoeksleutel: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: dict[str, str] | None = None,
) -> Fetched:
    """documentRequest, streamed and hashed; a broken stream is reported, not raised."""
    body = {"routeringskenmerk": routeringskenmerk, "zoeksleutel": zoeksleutel}
    digest, size, complete, problem = hashlib.sha256(), 0, True, None
    async with (client or doel.client()).stream(
        "POST", f"/v1/sessions/{sessie_id}/dossier", json=body, headers=headers
    ) as response:
        if response.status_code != httpx.codes.OK:
            await response.aread()
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
        else:
            try:
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    size += len(chunk)
            except httpx.TransportError:
                complete = False
    return Fetched(
        response.status_code, response.headers, size, digest.hexdigest(), complete, problem
    )


async def transfer(doel: LasParty, bron: LasParty, zoeksleutel: str) -> tuple[str, Fetched]:
    sessie_id = await open_session(doel.party, bron.party, zoeksleutel)
    return sessie_id, await fetch(doel.party, sessie_id, bron.routeringskenmerk, zoeksleutel)


async def record_of(tc: TrafficCenterUnderTest, fetched: Fetched) -> AuditRecord:
    transaction_id = fetched.headers.get("x-oso-transactie-id")
    assert transaction_id
    record = await tc.store.audit.by_transaction(transaction_id)
    assert record is not None
    return record


async def relay_records(
    tc: TrafficCenterUnderTest, sessie_id: str, kind: AuditType = AuditType.DOSSIER
) -> list[AuditRecord]:
    """The session's final relay records (not its overdrachtRequest and afmelding)."""
    return [
        r
        for r in await tc.store.audit.for_session(sessie_id)
        if r.type is kind and r.phase is Phase.FINAL
    ]


async def eventually_recorded(tc: TrafficCenterUnderTest, sessie_id: str) -> list[AuditRecord]:
    """The stream's record lands just after its last byte; wait for it briefly."""
    deadline = time.monotonic() + 5
    while not (records := await relay_records(tc, sessie_id)):
        assert time.monotonic() < deadline, "no exchange record"
        await asyncio.sleep(0.02)
    return records


# --- the dossier arrives as the bron sent it ---------------------------------------------------


@pytest.mark.parametrize("size", [0, 1024, 170 * 1024, 5 * MB])
async def test_the_doel_receives_exactly_the_bron_s_bytes(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty, size: int
) -> None:
    key = scenario_key("grootte", size)
    sessie_id, fetched = await transfer(doel, bron, key)
    assert fetched.status == 200
    assert fetched.complete
    assert fetched.size == size
    assert fetched.sha256 == generated_digest(size)
    assert fetched.headers["content-type"].startswith("application/xml")
    assert fetched.headers["x-oso-vrijgave"] == "inzage"  # PO → VO
    [record] = await eventually_recorded(tc, sessie_id)
    assert record == await record_of(tc, fetched)
    assert (record.result, record.size_bytes, record.sha256) == (
        "OverdrachtGeslaagd",
        size,
        generated_digest(size),
    )
    assert (record.doel_routeringskenmerk, record.bron_routeringskenmerk) == (
        doel.routeringskenmerk,
        bron.routeringskenmerk,
    )
    assert record.upstream_status == 200
    assert record.caller_serial == doel.party.serial
    assert record.forwarded_at
    assert record.response_in
    assert record.response_out
    assert record.request_in <= record.forwarded_at <= record.response_in <= record.response_out


async def test_a_realistic_dossier_in_the_oso_namespace(bron: LasParty, doel: LasParty) -> None:
    sessie_id = await open_session(doel.party, bron.party, key := scenario_key("gereed"))
    response = await doel.party.client().post(
        f"/v1/sessions/{sessie_id}/dossier",
        json={"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": key},
    )
    assert response.status_code == 200
    assert b'xmlns="http://www.edustandaard.nl/oso_gegevensset/2019/dossier"' in response.content
    assert 100_000 < len(response.content) < 300_000


# --- what the bron answers instead of a dossier passes through ---------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        ("nietgereed", 409, "DossierNogNietGereed"),
        ("geentoestemming", 403, "GeenToestemming"),
        ("geeninzage", 403, "GeenInzage"),
        ("verouderd", 409, "DossierVerouderd"),
        ("onbekend", 404, "DossierNietGevonden"),
    ],
)
async def test_the_bron_s_result_code_reaches_the_doel(
    tc: TrafficCenterUnderTest,
    bron: LasParty,
    doel: LasParty,
    scenario: str,
    status: int,
    code: str,
) -> None:
    sessie_id, fetched = await transfer(doel, bron, scenario_key(scenario))
    assert fetched.outcome == (status, code)
    [record] = await relay_records(tc, sessie_id)
    assert (record.result, record.upstream_status, record.size_bytes) == (code, status, None)


# --- the parent gate (rule 8) ------------------------------------------------------------------


async def test_no_overstapdossier_leaves_without_the_parents_release(
    bron: LasParty, doel: LasParty
) -> None:
    before = bron.server.counters.snapshot()
    _, fetched = await transfer(doel, bron, scenario_key("zondervrijgave"))
    assert fetched.outcome == (403, "GeenInzage")
    assert fetched.size == 0
    # The bron was asked (and its stream then closed unread), so the refusal is the TC's own.
    after = await bron.server.counters.wait_until(lambda c: c.in_progress == 0)
    assert after.started == before.started + 1


async def test_vo_to_vo_needs_toestemming_not_inzage(las: LasWorld, doel: LasParty) -> None:
    # A VO bron whose LAS believes it is PO, so it attests only inzage.
    confused = await las.school("VO", las_sector="PO")
    _, fetched = await transfer(doel, confused, scenario_key("gereed"))
    assert fetched.outcome == (403, "GeenToestemming")
    honest = await las.school("VO")
    _, fetched = await transfer(doel, honest, scenario_key("gereed"))
    assert fetched.status == 200
    assert fetched.headers["x-oso-vrijgave"] == "toestemming"


async def test_a_zoeksleutel_with_a_bsn_inside_is_relayed_not_refused(
    bron: LasParty, doel: LasParty
) -> None:
    key = "zk662460613" + "x" * 31 + "A"  # well-formed zoeksleutel v1; a BSN by chance
    _, fetched = await transfer(doel, bron, key)
    # The bron was asked (the TC did not refuse it as a pupil number); it holds no such pupil.
    assert fetched.outcome == (404, "DossierNietGevonden")


# --- the relay is its own session check --------------------------------------------------------


async def test_only_the_doel_with_the_right_zoeksleutel_on_an_open_session_is_relayed(
    tc: TrafficCenterUnderTest, las: LasWorld, bron: LasParty, doel: LasParty
) -> None:
    key = scenario_key("grootte", 1000)
    sessie_id = await open_session(doel.party, bron.party, key)
    started = bron.server.counters.snapshot().started
    other_bron = await tc.world.school("PO")

    async def code(party: Party, routeringskenmerk: str, zoeksleutel: str) -> tuple[int, str]:
        fetched = await fetch(party, sessie_id, routeringskenmerk, zoeksleutel)
        return fetched.status, (fetched.problem or {}).get("code", "")

    wrong_key = scenario_key("grootte", 1000)
    assert await code(doel.party, bron.routeringskenmerk, wrong_key) == (409, "SessieAfwijkend")
    assert await code(bron.party, bron.routeringskenmerk, key) == (403, "VerkeerdeRol")
    stranger = await tc.world.school("VO")
    assert await code(stranger, bron.routeringskenmerk, key) == (404, "SessieNietGevonden")
    assert await code(doel.party, other_bron.routeringskenmerk, key) == (
        404,
        "OnbekendAanleverpunt",
    )
    # Naming another school's endpoint does not show it this transfer (design rule 4).
    seen_by_other = (await other_bron.client().get("/v1/audit", params={"limit": 500})).json()
    assert all(r["sessie_id"] != sessie_id for r in seen_by_other["records"])
    assert await code(doel.party, bron.routeringskenmerk, "123456782") == (422, "PgnNietToegestaan")
    # Nothing of that reached the bron.
    assert bron.server.counters.snapshot().started == started
    closed = await doel.party.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "DossierNietGevonden", "routeringskenmerk": bron.routeringskenmerk},
    )
    assert closed.status_code == 200
    assert await code(doel.party, bron.routeringskenmerk, key) == (409, "SessieReedsAfgemeld")
    assert bron.server.counters.snapshot().started == started


# --- header hygiene ----------------------------------------------------------------------------


async def test_headers_upstream_and_back_are_only_what_the_contract_says(
    las: LasWorld, doel: LasParty
) -> None:
    seen: list[dict[str, str]] = []

    bron_app = fixed_answer(
        200,
        [
            ("content-type", "application/xml"),
            ("content-length", "7"),
            ("x-oso-vrijgave", "inzage"),
            ("set-cookie", "las=1"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
        ],
        b"<a/>\n\n\n",
        requests_seen=seen,
    )

    bron_party, _ = await las.school_with_app("PO", bron_app)
    key = scenario_key("gereed")
    sessie_id = await open_session(doel.party, bron_party, key)
    trace_id = uuid.uuid4().hex
    fetched = await fetch(
        doel.party,
        sessie_id,
        bron_party.routeringskenmerk,
        key,
        headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01", "Expect": "100-continue"},
    )
    assert fetched.status == 200
    assert fetched.size == 7
    assert "set-cookie" not in fetched.headers
    assert "x-private" not in fetched.headers
    assert "keep-alive" not in fetched.headers.get("connection", "")
    [upstream] = seen
    assert "expect" not in upstream
    assert upstream["accept-encoding"] == "identity"
    assert upstream["user-agent"].startswith("oso-traffic-center/")
    assert upstream["x-oso-sessie-id"] == sessie_id
    assert upstream["x-oso-transactie-id"] == fetched.headers["x-oso-transactie-id"]
    version, trace, span, flags = upstream["traceparent"].split("-")
    assert (version, trace, flags) == ("00", trace_id, "01")
    assert span != "1" * 16  # our hop has its own span id


async def test_a_trace_id_that_could_carry_a_pupil_number_is_not_forwarded(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty
) -> None:
    """Rule 7: the trace id travels to the bron, so a PGN-looking one starts a fresh trace."""
    seen: list[dict[str, str]] = []
    bron_app = fixed_answer(
        200,
        [
            ("content-type", "application/xml"),
            ("content-length", "4"),
            ("x-oso-vrijgave", "inzage"),
        ],
        b"<a/>",
        requests_seen=seen,
    )
    bron_party, _ = await las.school_with_app("PO", bron_app)
    key = scenario_key("gereed")
    sessie_id = await open_session(doel.party, bron_party, key)
    trace_id = "a662460613b" + "c" * 21  # a valid trace id with a BSN in it
    fetched = await fetch(
        doel.party,
        sessie_id,
        bron_party.routeringskenmerk,
        key,
        headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    assert fetched.status == 200
    [upstream] = seen
    _, trace, _, _ = upstream["traceparent"].split("-")
    assert len(trace) == 32
    assert trace != trace_id
    assert "662460613" not in upstream["traceparent"]


async def test_the_reference_doel_hashes_what_travelled_like_the_tc_when_the_bron_gzips(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty
) -> None:
    # A bron may compress although the TC asks for identity; the TC passes the bytes on as
    # they come and records their digest, and the reference doel must report the same one.
    gzipped = gzip.compress(b"".join(generated_chunks(200_000)))
    bron_app = fixed_answer(
        200,
        [
            ("content-type", "application/xml"),
            ("content-encoding", "gzip"),
            ("content-length", str(len(gzipped))),
            ("x-oso-vrijgave", "inzage"),
        ],
        gzipped,
    )
    bron_party, _ = await las.school_with_app("PO", bron_app)
    pgn = new_pgn()  # the fixed answer serves any pupil
    tls = ClientTLS(doel.party.cert, doel.party.key, tc.ca_pem)
    async with DoelClient(tc.url, tls=tls) as client:
        session = await client.open_session(bron_party.brin, pgn)
        fetched = await client.fetch_dossier(
            session.sessie_id, bron_party.routeringskenmerk, pgn, sink=(sink := io.BytesIO())
        )
    assert fetched.succeeded
    [record] = await eventually_recorded(tc, session.sessie_id)
    assert (fetched.bytes, fetched.sha256) == (record.size_bytes, record.sha256)
    assert fetched.sha256 == hashlib.sha256(gzipped).hexdigest()
    assert sink.getvalue() == gzipped


async def test_the_bron_s_own_words_never_reach_the_doel(las: LasWorld, doel: LasParty) -> None:
    bron_app = fixed_answer(
        404,
        [("content-type", "application/problem+json")],
        b'{"code": "DossierNietGevonden", "detail": "Jan Jansen, BSN 123456782"}',
    )

    bron_party, _ = await las.school_with_app("PO", bron_app)
    key = scenario_key("gereed")
    sessie_id = await open_session(doel.party, bron_party, key)
    fetched = await fetch(doel.party, sessie_id, bron_party.routeringskenmerk, key)
    assert fetched.problem is not None
    assert fetched.problem["code"] == "DossierNietGevonden"
    assert "Jansen" not in str(fetched.problem)


# --- faults ------------------------------------------------------------------------------------


async def test_a_bron_that_is_down_is_502(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty
) -> None:
    down = await tc.world.school("PO", register_endpoint=False)
    await las.register(down, f"https://127.0.0.1:{free_port()}/oso")
    key = scenario_key("gereed")
    sessie_id = await open_session(doel.party, down, key)
    fetched = await fetch(doel.party, sessie_id, down.routeringskenmerk, key)
    assert fetched.outcome == (
        502,
        "AanleverpuntOnbereikbaar",
    )
    [record] = await relay_records(tc, sessie_id)
    assert (record.result, record.upstream_status) == ("AanleverpuntOnbereikbaar", None)


async def test_a_bron_whose_certificate_does_not_name_its_host_is_502(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty
) -> None:
    impostor = await las.school("PO")
    # Same server, reached as "localhost": its certificate names only 127.0.0.1.
    other = await tc.world.school("PO", register_endpoint=False)
    await las.register(other, impostor.server.url.replace("127.0.0.1", "localhost"))
    key = scenario_key("gereed")
    sessie_id = await open_session(doel.party, other, key)
    fetched = await fetch(doel.party, sessie_id, other.routeringskenmerk, key)
    assert fetched.outcome == (
        502,
        "AanleverpuntOnbereikbaar",
    )


async def test_a_bron_that_hangs_is_504_within_the_timeout(bron: LasParty, doel: LasParty) -> None:
    started = time.monotonic()
    _, fetched = await transfer(doel, bron, scenario_key("hangt"))
    elapsed = time.monotonic() - started
    assert fetched.outcome == (
        504,
        "AanleverpuntTijdslimiet",
    )
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 3


async def test_a_bron_dropping_mid_stream_reaches_the_doel_as_a_broken_transfer(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty
) -> None:
    size = 2 * MB
    sessie_id, fetched = await transfer(doel, bron, scenario_key("afbreken", size))
    assert fetched.status == 200  # the headers had gone out before the bron broke off
    assert not fetched.complete
    assert fetched.size < size
    [record] = await eventually_recorded(tc, sessie_id)
    assert record.result == "OverdrachtMislukt"
    assert record.size_bytes is not None
    assert record.size_bytes < size


async def test_a_doel_hanging_up_closes_the_bron_stream_and_the_next_100_relays_work(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty
) -> None:
    key = scenario_key("trickle", 4 * MB)  # about 200 s at the LAS's pace
    sessie_id = await open_session(doel.party, bron.party, key)
    aborted_before = bron.server.counters.snapshot().aborted
    client = doel.party.new_client()
    body = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": key}
    async with client.stream("POST", f"/v1/sessions/{sessie_id}/dossier", json=body) as response:
        assert response.status_code == 200
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received >= 4096:
                break
    await client.aclose()  # the doel goes away mid-stream
    counters = await bron.server.counters.wait_until(
        lambda c: c.aborted == aborted_before + 1 and c.in_progress == 0, timeout=10
    )
    assert counters.in_progress == 0
    [record] = await eventually_recorded(tc, sessie_id)
    assert record.result == DOEL_DISCONNECTED
    assert record.size_bytes is not None
    assert 4096 <= record.size_bytes < 4 * MB

    key = scenario_key("grootte", 20_000)
    sessie_id = await open_session(doel.party, bron.party, key)
    clients = [doel.party.new_client() for _ in range(IN_FLIGHT - 2)]
    parallel = asyncio.Semaphore(len(clients))  # below the node's in-flight limit

    async def relay(i: int) -> Fetched:
        async with parallel:
            return await fetch(
                doel.party, sessie_id, bron.routeringskenmerk, key, client=clients[i % len(clients)]
            )

    results = await asyncio.gather(*(relay(i) for i in range(100)))
    assert [r.status for r in results] == [200] * 100
    assert {r.sha256 for r in results} == {generated_digest(20_000)}


async def test_a_dossier_announced_over_the_limit_is_413(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty
) -> None:
    sessie_id, fetched = await transfer(doel, bron, scenario_key("grootte", LIMIT + 1))
    assert fetched.outcome == (413, "DossierTeGroot")
    [record] = await relay_records(tc, sessie_id)
    assert record.result == "DossierTeGroot"


async def test_a_bron_streaming_past_the_limit_unannounced_is_cut_off(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty
) -> None:
    sessie_id, fetched = await transfer(doel, bron, scenario_key("liegt", LIMIT + MB))
    assert fetched.status == 200
    assert not fetched.complete
    assert fetched.size <= LIMIT
    [record] = await eventually_recorded(tc, sessie_id)
    assert record.result == "DossierTeGroot"


async def test_more_relays_than_the_node_allows_are_503(bron: LasParty, doel: LasParty) -> None:
    key = scenario_key("hangt")
    sessie_id = await open_session(doel.party, bron.party, key)
    clients = [doel.party.new_client() for _ in range(IN_FLIGHT)]
    hanging = [
        asyncio.create_task(fetch(doel.party, sessie_id, bron.routeringskenmerk, key, client=c))
        for c in clients
    ]
    await bron.server.counters.wait_until(lambda c: c.in_progress >= IN_FLIGHT)
    extra = await fetch(doel.party, sessie_id, bron.routeringskenmerk, key)
    assert extra.outcome == (503, "TeVeelOverdrachten")
    assert [r.status for r in await asyncio.gather(*hanging)] == [504] * IN_FLIGHT


# --- notifications (rule 6) --------------------------------------------------------------------


async def notify(bron: Party, sessie_id: str, doel_routeringskenmerk: str) -> httpx.Response:
    return await bron.client().post(
        "/v1/notifications",
        json={"sessie_id": sessie_id, "doel_routeringskenmerk": doel_routeringskenmerk},
    )


async def test_the_bron_notifies_the_doel_that_asked(
    tc: TrafficCenterUnderTest, bron: LasParty, doel: LasParty
) -> None:
    sessie_id = await open_session(doel.party, bron.party, scenario_key("gereed"))
    response = await notify(bron.party, sessie_id, doel.routeringskenmerk)
    assert response.status_code == 200, response.text
    assert response.json()["resultaat"] == "NotificatieOntvangen"
    received = await doel.server.notifications.wait_for(sessie_id)
    assert (received.bron_brin, received.bron_routeringskenmerk) == (
        bron.brin,
        bron.routeringskenmerk,
    )
    assert received.transactie_id == response.json()["transactie_id"]
    [record] = await relay_records(tc, sessie_id, AuditType.NOTIFICATION)
    assert record.result == "NotificatieOntvangen"


async def test_notifications_without_a_prior_request_are_refused(
    tc: TrafficCenterUnderTest, las: LasWorld, bron: LasParty, doel: LasParty
) -> None:
    other_doel = await las.school("VO")
    sessie_id = await open_session(doel.party, bron.party, scenario_key("gereed"))
    inbox_before = len(other_doel.server.notifications.received)

    never = await notify(bron.party, str(uuid.uuid4()), doel.routeringskenmerk)
    assert (never.status_code, never.json()["code"]) == (404, "SessieNietGevonden")
    elsewhere = await notify(bron.party, sessie_id, other_doel.routeringskenmerk)
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "GeenEerderVerzoek")
    stranger = await las.school("PO")
    not_the_bron = await notify(stranger.party, sessie_id, doel.routeringskenmerk)
    assert (not_the_bron.status_code, not_the_bron.json()["code"]) == (404, "SessieNietGevonden")
    # The doel is party to the session, in the wrong role: as on a session check.
    by_the_doel = await notify(doel.party, sessie_id, doel.routeringskenmerk)
    assert (by_the_doel.status_code, by_the_doel.json()["code"]) == (403, "VerkeerdeRol")
    await asyncio.sleep(0.2)
    assert len(other_doel.server.notifications.received) == inbox_before
    assert all(n.sessie_id != sessie_id for n in doel.server.notifications.received)


async def test_a_late_dossier_not_ready_then_notified_then_delivered(
    bron: LasParty, doel: LasParty
) -> None:
    key = scenario_key("nietgereed")
    first, fetched = await transfer(doel, bron, key)
    assert fetched.problem
    assert fetched.problem["code"] == "DossierNogNietGereed"
    closed = await doel.party.client().post(
        f"/v1/sessions/{first}/close",
        json={"resultaat": "DossierNogNietGereed", "routeringskenmerk": bron.routeringskenmerk},
    )
    assert closed.status_code == 200
    # The reference bron LAS notifies through the TC by itself, on a closed session.
    notification = await doel.server.notifications.wait_for(first, timeout=10)
    assert notification.bron_routeringskenmerk == bron.routeringskenmerk
    _, delivered = await transfer(doel, bron, key)
    assert delivered.status == 200
    assert delivered.complete


# --- the canary: nothing of a payload is kept anywhere -------------------------------------------


async def test_no_payload_is_kept_in_the_database_the_logs_or_temporary_files(
    tc: TrafficCenterUnderTest,
    las: LasWorld,
    bron: LasParty,
    doel: LasParty,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "CANARY" + letters(24)
    since = time.time()

    # A doel LAS whose notification receipt carries the marker.
    doel_app = fixed_answer(
        200,
        [("content-type", "application/json")],
        json.dumps({"resultaat": "NotificatieOntvangen", "opmerking": marker}).encode(),
    )

    marked_doel, _ = await las.school_with_app("VO", doel_app)
    key = scenario_key("grootte", 300_000, marker=marker)
    sessie_id = await open_session(marked_doel, bron.party, key)
    fetched = await fetch(marked_doel, sessie_id, bron.routeringskenmerk, key)
    assert fetched.status == 200
    assert fetched.size == 300_000
    assert fetched.sha256 == generated_digest(300_000, marker)  # the marker did pass through
    notified = await notify(bron.party, sessie_id, marked_doel.routeringskenmerk)
    assert notified.status_code == 200
    await eventually_recorded(tc, sessie_id)

    assert {r.type for r in await tc.store.audit.for_session(sessie_id)} == {
        AuditType.SESSION,
        AuditType.DOSSIER,
        AuditType.NOTIFICATION,
    }
    dump = await dump_database(tc)
    assert "audit_records" in dump
    assert marker not in dump
    assert key not in dump  # nor the zoeksleutel
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "documentRequest" in logged  # the exchange line was captured (metadata only)
    assert marker not in logged
    assert key not in logged
    out, err = capfd.readouterr()
    assert marker not in out + err
    assert not [
        path for path in recent_files(Path(tempfile.gettempdir()), since) if holds(path, marker)
    ]


def recent_files(root: Path, since: float) -> list[Path]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime >= since - 1:
                    found.append(path)
    return found


def holds(path: Path, marker: str) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as file:
        while block := file.read(MB):
            if marker.encode() in block:
                return True
    return False
