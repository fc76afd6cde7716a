"""The audit log: every exchange and admin action on the chain, verify, export, GET /v1/audit."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from tests.conftest import BACKENDS, DatabaseFactory
from tests.support.messages import check_body, open_session, session_body
from tests.support.processes import clean_env
from tests.support.server import TrafficCenterUnderTest
from traffic_center.api.problems import status_for
from traffic_center.audit.trail import AuditTrail
from traffic_center.audit.verify import verify_chain
from traffic_center.domain.audit import AuditRecord, AuditType
from traffic_center.observability.metrics import Metrics
from traffic_center.store.database import STATEMENT_TIMEOUT_SECONDS
from traffic_center.store.store import Store


async def test_every_broker_exchange_and_admin_action_is_recorded_and_chained(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("VO", "PO")
    granted = await open_session(doel, bron)
    assert granted.status_code == 201
    sessie_id = granted.json()["sessie_id"]
    check = await bron.client().post(
        f"/v1/sessions/{sessie_id}/check",
        json=check_body(doel),
    )
    assert check.status_code == 200
    closed = await doel.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": bron.routeringskenmerk},
    )
    assert closed.status_code == 200
    again = await doel.client().post(
        f"/v1/sessions/{sessie_id}/close",
        json={"resultaat": "OverdrachtGeslaagd", "routeringskenmerk": bron.routeringskenmerk},
    )
    assert again.status_code == 409

    records = await tc.store.audit.for_session(sessie_id)
    assert [(r.type, r.result, r.http_status) for r in records] == [
        (AuditType.SESSION, "SessieToegekend", 201),
        (AuditType.CHECK, "SessieValide", 200),
        (AuditType.CLOSE, "OverdrachtGeslaagd", 200),
        (AuditType.CLOSE, "SessieReedsAfgemeld", 409),
    ]
    session_record = records[0]
    assert (session_record.doel_routeringskenmerk, session_record.bron_brin) == (
        doel.routeringskenmerk,
        bron.brin,
    )
    assert session_record.caller_serial == doel.serial
    assert records[1].caller_serial == bron.serial
    assert granted.headers["x-request-id"] == session_record.request_id

    # Refused callers and administrative actions are on the record too.
    victim = await tc.world.school("VO")  # never seen by the server: nothing cached
    await tc.certificates.revoke(victim.serial, reason="keyCompromise")
    refused = await victim.client().get("/v1/whoami")
    assert refused.status_code == 403
    recent = [item.record async for item in tc.store.audit.walk()][-3:]
    assert (recent[-2].type, recent[-2].subject, recent[-2].result) == (
        AuditType.CERTIFICATE_REVOKED,
        victim.serial,
        "keyCompromise",
    )
    assert (recent[-1].type, recent[-1].result, recent[-1].caller_serial) == (
        AuditType.REFUSED_CALLER,
        "CertificaatIngetrokken",
        victim.serial,
    )
    issued = [
        item.record
        async for item in tc.store.audit.walk()
        if item.record.type is AuditType.CERTIFICATE_ISSUED and item.record.subject == bron.serial
    ]
    assert len(issued) == 1

    verdict = await verify_chain(tc.store, tc.secret)
    assert verdict.broken is None
    assert verdict.checked == (await tc.store.audit.head()).count


async def test_a_party_reads_only_its_own_records_page_by_page(
    tc: TrafficCenterUnderTest,
) -> None:
    doel, bron = await tc.world.schools("VO", "PO")
    other, _ = await tc.world.schools("VO", "PO")
    sessie_ids = []
    for _ in range(5):
        granted = await open_session(doel, bron)
        assert granted.status_code == 201
        sessie_ids.append(granted.json()["sessie_id"])
    assert (await open_session(other, bron)).status_code == 201
    checked = await bron.client().post(
        f"/v1/sessions/{sessie_ids[0]}/check",
        json=check_body(doel),
    )
    assert checked.status_code == 200

    seen: list[dict[str, object]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await doel.client().get("/v1/audit", params=params)
        assert page.status_code == 200
        body = page.json()
        seen.extend(body["records"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    sessions = [r for r in seen if r["type"] == "overdrachtRequest"]
    assert len(sessions) == 5
    assert pages >= 3
    assert all(
        doel.routeringskenmerk in (r["doel_routeringskenmerk"], r["bron_routeringskenmerk"])
        for r in seen
    )
    assert [r["id"] for r in seen] == sorted(r["id"] for r in seen)  # oldest first, no repeats
    assert len({r["id"] for r in seen}) == len(seen)
    assert {r["sessie_id"] for r in sessions} == set(sessie_ids)  # not the other doel's
    # The bron sees what its endpoint took part in: the check, not sessions naming no endpoint.
    as_bron = (await bron.client().get("/v1/audit", params={"limit": 500})).json()["records"]
    exchanges = [(r["type"], r["sessie_id"]) for r in as_bron if r["sessie_id"] is not None]
    assert exchanges == [("sessiecontroleRequest", sessie_ids[0])]
    # ... and the administrative actions on its own endpoint.
    assert {r["type"] for r in as_bron if r["sessie_id"] is None} == {
        "aanleverpuntGewijzigd",
        "certificaatUitgegeven",
    }
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    empty = await doel.client().get("/v1/audit", params={"since": future})
    assert empty.json() == {"records": [], "next_cursor": None}
    bad = await doel.client().get("/v1/audit", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["code"]) == (422, "OngeldigeCursor")
    backwards = await doel.client().get(
        "/v1/audit", params={"since": future, "until": "2020-01-01T00:00:00Z"}
    )
    assert (backwards.status_code, backwards.json()["code"]) == (422, "OngeldigePeriode")


# --- verify and export: tampering is found and named -----------------------------------------

SECRET = "9f1c2a7be04d5c3a8e6f7b2d1c0a9e8f7d6c5b4a3928171615141312110f0e0d"  # a test key, 64 hex


async def _filled_store(url: str, count: int) -> Store:
    store = await Store.open(url)
    now = dt.datetime.now(dt.UTC)
    for n in range(count):
        record = AuditRecord(
            type=AuditType.SESSION,
            transaction_id=str(uuid.uuid4()),
            recorded_at=now + dt.timedelta(seconds=n),
            result="SessieToegekend",
            http_status=201,
            doel_routeringskenmerk=f"{n:020d}",
        )
        await store.audit.append(record, secret=SECRET.encode())
    return store


def run_cli(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "TC_DATABASE_URL": url, "TC_SECRET_KEY": SECRET, "TC_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "traffic_center", "audit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_an_export_waiting_behind_a_lock_outlasts_the_nodes_statement_timeout(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """A command's store has no statement timeout: an `audit export` (or a migration of a
    large log) that takes longer than the serving node's 10 s, here waiting behind another
    transaction's lock, completes instead of failing half-way."""
    url = await database_factory("postgresql")
    store = await _filled_store(url, 3)
    try:
        async with store.database.transaction() as conn:
            await conn.execute(text("LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            exporting = asyncio.create_task(asyncio.to_thread(run_cli, url, tmp_path, "export"))
            await asyncio.sleep(STATEMENT_TIMEOUT_SECONDS + 1)
            assert not exporting.done(), exporting.result().stderr  # it waits for the lock
        exported = await exporting
        waited = time.monotonic() - started
    finally:
        await store.close()
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 3
    assert waited > STATEMENT_TIMEOUT_SECONDS


TAMPERING = {
    "edit": ["UPDATE audit_records SET result = 'OverdrachtGeslaagd' WHERE id = 4"],
    "delete": ["DELETE FROM audit_records WHERE id = 4"],
    "swap": [
        "UPDATE audit_records SET id = -4 WHERE id = 4",
        "UPDATE audit_records SET id = 4 WHERE id = 5",
        "UPDATE audit_records SET id = 5 WHERE id = -4",
    ],
    "delete-newest": ["DELETE FROM audit_records WHERE id = 8"],
}
NAMED = {"edit": "record 4 ", "delete": "record 5 ", "swap": "record 4 ", "delete-newest": "end"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tampering", list(TAMPERING))
async def test_verify_names_the_first_tampered_record(
    database_factory: DatabaseFactory, tmp_path: Path, backend: str, tampering: str
) -> None:
    url = await database_factory(backend)
    store = await _filled_store(url, 8)
    try:
        intact = run_cli(url, tmp_path, "verify")
        assert (intact.returncode, intact.stdout.strip()) == (0, "OK 8 records")
        async with store.database.transaction() as conn:
            for statement in TAMPERING[tampering]:
                await conn.execute(text(statement))
    finally:
        await store.close()
    broken = run_cli(url, tmp_path, "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.startswith("BROKEN at ")
    assert NAMED[tampering] in broken.stdout


@pytest.mark.parametrize("backend", BACKENDS)
async def test_export_writes_json_lines_for_a_period(
    database_factory: DatabaseFactory, tmp_path: Path, backend: str
) -> None:
    url = await database_factory(backend)
    store = await _filled_store(url, 6)
    records = [item async for item in store.audit.walk()]
    await store.close()
    since = records[2].record.recorded_at.isoformat()
    until = records[5].record.recorded_at.isoformat()
    exported = run_cli(url, tmp_path, "export", "--since", since, "--until", until)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["id"] for line in lines] == [records[2].id, records[3].id, records[4].id]
    assert lines[0]["hash"] == records[2].hash
    assert lines[0]["prev_hash"] == records[1].hash
    out = tmp_path / "export.jsonl"
    assert run_cli(url, tmp_path, "export", "--out", str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 6
    again = run_cli(url, tmp_path, "export", "--out", str(out))
    assert again.returncode == 2
    assert "exists" in again.stderr
    bad = run_cli(url, tmp_path, "export", "--since", "yesterday")
    assert (bad.returncode, bad.stdout) == (2, "")
    nowhere = run_cli(url, tmp_path, "export", "--out", str(tmp_path / "no-such-dir" / "x.jsonl"))
    assert (nowhere.returncode, nowhere.stderr.count("\n")) == (2, 1), nowhere.stderr
    assert "cannot write there (No such file or directory)" in nowhere.stderr


async def test_only_a_uuid_is_taken_as_request_id(tc: TrafficCenterUnderTest) -> None:
    doel, bron = await tc.world.schools("VO", "PO")
    given = str(uuid.uuid4())
    kept = await doel.client().post(
        "/v1/sessions", json=session_body(bron), headers={"X-Request-Id": given}
    )
    assert kept.headers["x-request-id"] == given
    # Free text could be anything, a BSN included: it never reaches a log line or a record.
    replaced = await doel.client().post(
        "/v1/sessions", json=session_body(bron), headers={"X-Request-Id": "123456782"}
    )
    assert replaced.headers["x-request-id"] != "123456782"
    assert uuid.UUID(replaced.headers["x-request-id"])
    record = await tc.store.audit.for_session(replaced.json()["sessie_id"])
    assert record[0].request_id == replaced.headers["x-request-id"]


async def test_a_record_the_store_rejects_is_set_aside_and_the_chain_goes_on(
    tc: TrafficCenterUnderTest,
) -> None:
    """A record PostgreSQL refuses for its content must not block every later exchange."""
    trail = AuditTrail(
        tc.store,
        secret=tc.secret,
        metrics=Metrics(CollectorRegistry()),
        clock=tc.clock,
        status_for=status_for,
    )
    unfit = AuditRecord(
        type=AuditType.SESSION,
        transaction_id=str(uuid.uuid4()),
        recorded_at=tc.clock(),
        result="SessieToegekend",
        request_id="x" * 40,  # longer than the column (enforced by PostgreSQL only)
    )
    await trail.record(unfit)
    assert trail.pending == 0
    await trail.ensure_writable()  # not wedged
    verdict = await verify_chain(tc.store, tc.secret)
    assert verdict.broken is None
