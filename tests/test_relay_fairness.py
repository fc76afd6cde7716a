"""Issue 10, row 2: one school cannot hold the relay slots, over real TLS to reference LAS servers.

A hostile doel school opens 64 relays from a trickling bron, or relays it never reads; another
school's transfer must still go through promptly, the total deadline cuts a relay that takes
too long (a dossier, or a notification the doel answers forever), and the write timeout frees
the slot of a doel that stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.support.las import LasParty, LasWorld, scenario_key
from tests.support.messages import open_session as request_session
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.domain.audit import DOEL_STOPPED_READING, RELAY_DEADLINE_PASSED, Phase
from traffic_center.domain.errors import RelayBusy
from traffic_center.relay.slots import RelaySlots, Share, SlotUsage

MB = 1024 * 1024
PER_SCHOOL = 16
TOTAL_SECONDS = 8.0
WRITE_TIMEOUT = 2.0
# Behaviour bounds, not speed claims: "promptly" is well under the hog's deadline.
PROMPT_SECONDS = 5.0
HOG_RELAYS = 64

TRAFFIC_CENTER_SETTINGS = {
    "relay_max_in_flight": 64,
    "relay_max_per_doel_school": PER_SCHOOL,
    "relay_max_per_bron_endpoint": PER_SCHOOL,
    "relay_total_seconds": TOTAL_SECONDS,
    "relay_doel_write_timeout_seconds": WRITE_TIMEOUT,
    "relay_read_timeout_seconds": 5.0,
    # The hog opens 64 relays at once: let its connections through (the per-certificate
    # connection cap has its own test) so the relay slots are what turns it away.
    "max_connections_per_certificate": 256,
}


async def open_session(doel: Party, bron: Party, zoeksleutel: str) -> str:
    response = await request_session(doel, bron, zoeksleutel=zoeksleutel)
    assert response.status_code == 201, response.text
    return str(response.json()["sessie_id"])


def dossier_body(bron: LasParty, zoeksleutel: str) -> dict[str, str]:
    return {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": zoeksleutel}


async def final_results(tc: TrafficCenterUnderTest, sessie_id: str, count: int) -> list[str]:
    """The results of the session's ``count`` final relay records, once they are all in."""
    deadline = time.monotonic() + 10
    while True:
        records = [
            r.result
            for r in await tc.store.audit.for_session(sessie_id)
            if r.phase is Phase.FINAL and r.type.value == "documentRequest"
        ]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.05)


async def slots_free(tc: TrafficCenterUnderTest, *, within: float) -> float | None:
    """Seconds until the node holds no relay slot (its gauge says 0), or None within ``within``."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if tc.metrics_registry.get_sample_value("traffic_center_relays_in_flight") == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def metric(tc: TrafficCenterUnderTest, name: str, share: str) -> float:
    value = tc.metrics_registry.get_sample_value(name, {"share": share})
    return value or 0.0


async def test_a_school_holding_its_share_leaves_another_school_prompt(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    hog, trickling, victim, other_bron = (
        await las.school("VO"),
        await las.school("PO"),
        await las.school("VO"),
        await las.school("PO"),
    )
    key = scenario_key("trickle", 4 * MB)  # about 200 s at the LAS's pace: longer than allowed
    sessie_id = await open_session(hog.party, trickling.party, key)
    refused_before = metric(tc, "traffic_center_relay_refusals_total", Share.DOEL_SCHOOL)
    clients = [hog.party.new_client() for _ in range(HOG_RELAYS)]
    streams = [
        c.stream("POST", f"/v1/sessions/{sessie_id}/dossier", json=dossier_body(trickling, key))
        for c in clients
    ]
    responses = await asyncio.gather(*(s.__aenter__() for s in streams))
    try:
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * PER_SCHOOL + [503] * (HOG_RELAYS - PER_SCHOOL)
        refusals = [r for r in responses if r.status_code == 503]
        for refusal in refusals:
            await refusal.aread()
        assert {r.json()["code"] for r in refusals} == {RelayBusy.code}
        assert metric(tc, "traffic_center_relay_largest_share", Share.DOEL_SCHOOL) == PER_SCHOOL
        assert (
            metric(tc, "traffic_center_relay_refusals_total", Share.DOEL_SCHOOL) - refused_before
            == HOG_RELAYS - PER_SCHOOL
        )

        gereed = scenario_key("gereed")
        started = time.monotonic()
        other_session = await open_session(victim.party, other_bron.party, gereed)
        answer = await victim.party.client().post(
            f"/v1/sessions/{other_session}/dossier", json=dossier_body(other_bron, gereed)
        )
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert len(answer.content) > 100_000
        assert elapsed < PROMPT_SECONDS

        async with httpx.AsyncClient(timeout=5) as ops:
            readyz = await ops.get(f"{tc.ops_url}/readyz")
        assert readyz.status_code == 200  # a full share is not an unready node
    finally:
        for stream in streams:
            await stream.__aexit__(None, None, None)
    assert await slots_free(tc, within=5) is not None


async def test_the_deadline_cuts_a_transfer_that_takes_too_long(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    doel, bron = await las.school("VO"), await las.school("PO")
    key = scenario_key("trickle", 4 * MB)
    sessie_id = await open_session(doel.party, bron.party, key)
    received, complete = 0, True
    started = time.monotonic()
    async with doel.party.new_client().stream(
        "POST", f"/v1/sessions/{sessie_id}/dossier", json=dossier_body(bron, key)
    ) as response:
        assert response.status_code == 200
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
        except httpx.TransportError:
            complete = False
    elapsed = time.monotonic() - started
    assert not complete
    assert 0 < received < 4 * MB
    assert TOTAL_SECONDS - 1 <= elapsed <= TOTAL_SECONDS + 3
    assert await final_results(tc, sessie_id, 1) == [RELAY_DEADLINE_PASSED]


async def test_a_doel_that_never_reads_loses_its_slot_at_the_write_timeout(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    doel, bron = await las.school("VO"), await las.school("PO")
    key = scenario_key("grootte", 256 * MB)  # far more than the socket buffers between us hold
    sessie_id = await open_session(doel.party, bron.party, key)
    client = doel.party.new_client()
    async with client.stream(
        "POST", f"/v1/sessions/{sessie_id}/dossier", json=dossier_body(bron, key)
    ) as response:
        assert response.status_code == 200
        freed = await slots_free(tc, within=TOTAL_SECONDS - 1)  # it never reads a byte
    assert freed is not None, "the doel that never reads still holds its slot"
    assert await final_results(tc, sessie_id, 1) == [DOEL_STOPPED_READING]


def test_a_bron_endpoint_gets_its_share_and_the_node_its_total() -> None:
    seen: list[SlotUsage] = []
    refused: list[Share] = []
    slots = RelaySlots(
        total=5,
        per_doel_school=3,
        per_bron_endpoint=2,
        on_change=seen.append,
        on_refused=refused.append,
    )
    held = [slots.acquire(doel_school=f"0{n}AA", bron_endpoint="B") for n in range(2)]
    with pytest.raises(RelayBusy):
        slots.acquire(doel_school="09ZZ", bron_endpoint="B")
    held += [slots.acquire(doel_school="01AA", bron_endpoint=f"C{n}") for n in range(2)]
    with pytest.raises(RelayBusy):
        slots.acquire(doel_school="01AA", bron_endpoint="C9")
    held.append(slots.acquire(doel_school="05EE", bron_endpoint="D"))
    with pytest.raises(RelayBusy):
        slots.acquire(doel_school="06FF", bron_endpoint="E")
    assert refused == [Share.BRON_ENDPOINT, Share.DOEL_SCHOOL, Share.NODE]
    assert seen[-1] == SlotUsage(in_flight=5, largest_doel_school=3, largest_bron_endpoint=2)
    for slot in held:
        slots.release(slot)
    assert slots.usage() == SlotUsage(0, 0, 0)


def trickling_receipt() -> Any:
    """A doel endpoint that answers a notification's headers, then a byte a second, forever:
    never silent for a read timeout, never done."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(120):
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            with contextlib.suppress(TimeoutError):
                if (await asyncio.wait_for(receive(), 1.0))["type"] == "http.disconnect":
                    return

    return app


async def test_the_deadline_cuts_a_notification_the_doel_answers_forever(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    bron = await las.school("PO")
    doel, _ = await las.school_with_app("VO", trickling_receipt())
    sessie_id = await open_session(doel, bron.party, scenario_key("gereed"))
    started = time.monotonic()
    answer = await bron.party.client().post(
        "/v1/notifications",
        json={"sessie_id": sessie_id, "doel_routeringskenmerk": doel.routeringskenmerk},
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert answer.json()["code"] == "AanleverpuntTijdslimiet"
    assert TOTAL_SECONDS - 1 <= elapsed <= TOTAL_SECONDS + 3
    assert await slots_free(tc, within=2) is not None
