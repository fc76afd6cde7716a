"""Refused callers: one audit record per certificate and window, with a count (real TLS)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from traffic_center.domain.audit import AuditRecord, AuditType

WINDOW_SECONDS = 2.0
TRAFFIC_CENTER_SETTINGS = {"refusal_audit_window_seconds": WINDOW_SECONDS}
# Enough that one record per refusal (the old code) would be 15 times the bound of 40 below.
ATTACK_REQUESTS = 600
ATTACKERS = 8


async def refusals_of(tc: TrafficCenterUnderTest, serial: str) -> list[AuditRecord]:
    return [
        item.record
        async for item in tc.store.audit.walk()
        if item.record.type is AuditType.REFUSED_CALLER and item.record.caller_serial == serial
    ]


def counted(records: list[AuditRecord]) -> int:
    total = 0
    for record in records:
        assert record.subject is not None
        assert record.subject.startswith("n=")
        total += int(record.subject.removeprefix("n="))
    return total


async def test_a_revoked_certificate_hammering_adds_a_handful_of_records(
    tc: TrafficCenterUnderTest,
) -> None:
    attacker, legitimate = await tc.world.schools("VO", "PO")
    await tc.certificates.revoke(attacker.serial, reason="keyCompromise")
    records_before = (await tc.store.audit.head()).count

    async def hammer(client: httpx.AsyncClient, path: str) -> list[int]:
        per_client = ATTACK_REQUESTS // ATTACKERS
        return [(await client.get(path)).status_code for _ in range(per_client)]

    async def legitimate_calls(stop: asyncio.Event) -> list[int]:
        statuses = []
        while not stop.is_set() and len(statuses) < 500:
            statuses.append((await legitimate.client().get("/v1/whoami")).status_code)
            await asyncio.sleep(0.05)
        return statuses

    stop = asyncio.Event()
    watching = asyncio.create_task(legitimate_calls(stop))
    started = time.monotonic()
    paths = ["/v1/whoami", "/v1/endpoints"]  # whoami and a full exchange refuse alike
    attacks = await asyncio.gather(
        *(hammer(attacker.new_client(), paths[i % 2]) for i in range(ATTACKERS))
    )
    elapsed = time.monotonic() - started
    stop.set()
    legitimate_statuses = await watching

    assert sorted({s for statuses in attacks for s in statuses}) == [403]
    assert legitimate_statuses
    assert set(legitimate_statuses) == {200}
    # The counted rest is recorded once its window has passed (on a heartbeat of the node).
    deadline = time.monotonic() + WINDOW_SECONDS + 10
    records = await refusals_of(tc, attacker.serial)
    while counted(records) < ATTACK_REQUESTS and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        records = await refusals_of(tc, attacker.serial)
    assert counted(records) == ATTACK_REQUESTS
    # At most two records per window (the first refusal at once, then the count), where
    # today's code wrote one per request.
    windows = math.ceil(elapsed / WINDOW_SECONDS) + 1
    assert len(records) <= 2 * windows
    assert len(records) <= 40, f"{len(records)} records in {elapsed:.1f} s"
    added = (await tc.store.audit.head()).count - records_before
    assert added == len(records), "no other record for the attack"  # whoami records nothing
    assert {r.result for r in records} == {"CertificaatIngetrokken"}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_node_that_stops_records_the_count_of_its_open_window(
    backend: str, database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    url = await database_factory(backend)
    tc = await start_traffic_center(tmp_path, url, refusal_audit_window_seconds=3600)
    try:
        attacker = await tc.world.school("VO")
        await tc.certificates.revoke(attacker.serial, reason="keyCompromise")
        client = attacker.client()
        statuses = [(await client.get("/v1/whoami")).status_code for _ in range(25)]
        assert set(statuses) == {403}
        assert counted(await refusals_of(tc, attacker.serial)) == 1  # the window is open
    finally:
        await tc.world.aclose()
        await asyncio.to_thread(tc.thread.stop)
    try:
        records = await refusals_of(tc, attacker.serial)
        assert [r.subject for r in records] == ["n=1", "n=24"]
    finally:
        await tc.store.close()
