"""An endpoint's life: it moves host, is deactivated and comes back, and keeps its identity.

Sessions and notifications follow the routeringskenmerk, never a URL: the relay looks the
endpoint up at every call, so a LAS that moves in the middle of a transfer is found at its new
address, over real mTLS.
"""

from __future__ import annotations

import asyncio

from tests.support.las import PUPILS, LasParty, LasWorld, scenario_key
from tests.support.messages import open_session
from tests.support.server import TrafficCenterUnderTest
from traffic_center.domain.audit import AuditType
from traffic_center.las.server import LasServer


async def second_las_for(las: LasWorld, school: LasParty) -> LasServer:
    """Another reference LAS for the same school, with its certificates: the new host."""
    server = await asyncio.to_thread(LasServer(school.server.config, pupils=PUPILS).start)
    las.servers.append(server)
    return server


async def fetch(doel: LasParty, bron: LasParty, sessie_id: str, key: str) -> int:
    body = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": key}
    answered = await doel.party.client().post(f"/v1/sessions/{sessie_id}/dossier", json=body)
    return answered.status_code


async def test_a_bron_that_moves_mid_session_is_asked_at_its_new_address(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    bron, doel = await las.school("PO"), await las.school("VO")
    key = scenario_key("gereed")
    opened = await open_session(doel.party, bron.party, zoeksleutel=key)
    assert opened.status_code == 201
    sessie_id = opened.json()["sessie_id"]

    new_host = await second_las_for(las, bron)
    old_before = bron.server.counters.snapshot().started
    moved = await tc.registry.move_endpoint(bron.routeringskenmerk, url=new_host.url)
    assert moved.url == new_host.url

    assert await fetch(doel, bron, sessie_id, key) == 200
    assert new_host.counters.snapshot().started == 1
    assert bron.server.counters.snapshot().started == old_before

    # The final record lands just after the last byte.
    for _ in range(100):
        records = await tc.store.audit.for_session(sessie_id)
        if any(r.type is AuditType.DOSSIER and r.result == "OverdrachtGeslaagd" for r in records):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no delivered record: {records}")


async def test_a_notification_follows_a_doel_that_moved(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    # The bron's own LAS would notify by itself once ready: not within this test.
    bron, doel = await las.school("PO", notify_after=60), await las.school("VO")
    key = scenario_key("nietgereed")
    opened = await open_session(doel.party, bron.party, zoeksleutel=key)
    sessie_id = opened.json()["sessie_id"]
    assert await fetch(doel, bron, sessie_id, key) == 409

    doel_new_host = await second_las_for(las, doel)
    await tc.registry.move_endpoint(doel.routeringskenmerk, url=doel_new_host.url)
    notified = await bron.party.client().post(
        "/v1/notifications",
        json={"sessie_id": sessie_id, "doel_routeringskenmerk": doel.routeringskenmerk},
    )
    assert notified.status_code == 200, notified.text
    assert [n.sessie_id for n in doel_new_host.notifications.received] == [sessie_id]
    assert sessie_id not in [n.sessie_id for n in doel.server.notifications.received]


async def test_a_deactivated_endpoint_comes_back_with_the_same_identity(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    bron, doel = await las.school("PO"), await las.school("VO")
    await tc.registry.deactivate_endpoint(doel.routeringskenmerk)
    refused = await open_session(doel.party, bron.party, zoeksleutel=scenario_key("gereed"))
    assert (refused.status_code, refused.json()["code"]) == (403, "EigenAanleverpuntNietActief")

    await tc.registry.reactivate_endpoint(doel.routeringskenmerk)
    await asyncio.sleep(tc.settings.revocation_cache_seconds)
    again = await open_session(doel.party, bron.party, zoeksleutel=scenario_key("gereed"))
    assert again.status_code == 201, again.text

    await tc.registry.deactivate_school(bron.brin)
    gone = await open_session(doel.party, bron.party, zoeksleutel=scenario_key("gereed"))
    assert gone.json()["code"] == "VerstrekkerNietBekend"
    await tc.registry.reactivate_school(bron.brin)
    back = await open_session(doel.party, bron.party, zoeksleutel=scenario_key("gereed"))
    assert back.status_code == 201

    changes = [
        item.record
        async for item in tc.store.audit.walk()
        if item.record.type in (AuditType.ENDPOINT_CHANGED, AuditType.SCHOOL_CHANGED)
        and item.record.subject in (doel.routeringskenmerk, bron.brin)
    ]
    assert [r.result for r in changes][-4:] == [
        "Gedeactiveerd",
        "Geheractiveerd",
        "Gedeactiveerd",
        "Geheractiveerd",
    ]
