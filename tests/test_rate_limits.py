"""Rule 9: per-endpoint rate limits on every route, sliding windows (both backends)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import DatabaseFactory
from tests.support import messages
from tests.support.pupils import new_pgn, zoeksleutel_of
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.test_broker_api import assert_problem, open_session
from tests.test_exchange_pipeline import dossier_answer
from traffic_center.broker.rate_limits import judge, window_budget
from traffic_center.domain.audit import AuditType, Phase

TRAFFIC_CENTER_SETTINGS = {
    "rate_limit_sessions_per_minute": 3,
    "rate_limit_endpoints_per_minute": 2,
    "rate_limit_checks_per_minute": 2,
    "rate_limit_dossiers_per_minute": 2,
    "rate_limit_closes_per_minute": 2,
    "rate_limit_notifications_per_minute": 2,
    "rate_limit_audit_reads_per_minute": 2,
    "rate_limit_whoami_per_minute": 2,
}


def at_second(tc: TrafficCenterUnderTest, minute: int, second: int) -> None:
    """Move the server's clock to ``second`` into the ``minute``-th window from now."""
    now = dt.datetime.now(dt.UTC)
    window = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=minute)
    tc.clock.offset = window + dt.timedelta(seconds=second) - now


def test_the_estimate_slides_over_the_previous_window() -> None:
    # 3 hits late in the last window still weigh 5/6 ten seconds into this one.
    assert not judge(current=1, previous=3, elapsed=10, per_minute=3).allowed
    assert judge(current=1, previous=3, elapsed=50, per_minute=3).allowed
    # Retry-After: when 3 × (1 − t/60) + 2 ≤ 3, i.e. at t = 40, 30 s from now.
    assert judge(current=1, previous=3, elapsed=10, per_minute=3).retry_after_seconds == 30
    # Over budget in this window alone: wait into the next one.
    assert judge(current=4, previous=0, elapsed=10, per_minute=3).retry_after_seconds == 50 + 30


def test_a_shorter_window_holds_the_budget_pro_rata() -> None:
    """The qualification sandbox's window: 2 s, 30 a minute, so one open a window."""
    assert window_budget(30, 2) == 1
    assert window_budget(1, 2) == 1  # at least one a window
    assert window_budget(120, 60) == 120
    assert judge(current=1, previous=0, elapsed=0.5, per_minute=30, window_seconds=2).allowed
    second = judge(current=2, previous=0, elapsed=0.5, per_minute=30, window_seconds=2)
    # Into the next window, once all of this one (two hits, the refused one too) slid out.
    assert (second.allowed, second.retry_after_seconds) == (False, 4)
    # After that wait: the next window but one, where the refused hits no longer weigh.
    assert judge(current=1, previous=0, elapsed=0.0, per_minute=30, window_seconds=2).allowed


async def test_session_creation_is_limited_per_endpoint(tc: TrafficCenterUnderTest) -> None:
    doel, other, bron = await tc.world.schools("PO", "PO", "PO")
    at_second(tc, 10, 5)  # a fresh window, whatever ran before
    try:
        statuses = [(await open_session(doel, bron)).status_code for _ in range(3)]
        limited = await open_session(doel, bron)
        # Another endpoint has its own budget.
        assert (await open_session(other, bron)).status_code == 201
        at_second(tc, 12, 5)  # the windows slid past
        after_window = await open_session(doel, bron)
    finally:
        tc.clock.offset = dt.timedelta()
    assert statuses == [201, 201, 201]
    assert_problem(limited, 429, "TeVeelVerzoeken")
    assert 1 <= int(limited.headers["Retry-After"]) <= 120
    assert after_window.status_code == 201


async def test_a_window_boundary_does_not_double_the_budget(tc: TrafficCenterUnderTest) -> None:
    """A fixed window allows 3 at :50 and 3 more at :10; the sliding estimate does not."""
    doel, bron = await tc.world.schools("PO", "PO")
    try:
        at_second(tc, 30, 50)
        late = [(await open_session(doel, bron)).status_code for _ in range(3)]
        at_second(tc, 31, 10)
        early = await open_session(doel, bron)
        at_second(tc, 31, 50)  # 3 × 1/6 + 1 (the refused one counts) + 1 ≤ 3
        later = await open_session(doel, bron)
    finally:
        tc.clock.offset = dt.timedelta()
    assert late == [201, 201, 201]
    assert_problem(early, 429, "TeVeelVerzoeken")
    assert 28 <= int(early.headers["Retry-After"]) <= 32
    assert later.status_code == 201


async def test_endpoint_overview_is_limited_per_endpoint(tc: TrafficCenterUnderTest) -> None:
    asking = await tc.world.school("VO")
    at_second(tc, 20, 5)
    try:
        client = asking.client()
        statuses = [(await client.get("/v1/endpoints")).status_code for _ in range(3)]
    finally:
        tc.clock.offset = dt.timedelta()
    assert statuses == [200, 200, 429]


async def test_every_route_has_its_budget(tc: TrafficCenterUnderTest) -> None:
    """Each route counts on its own: two calls (answered, or refused by the broker) and the
    third is 429 with a Retry-After, whatever the route."""
    party, other = await tc.world.schools("PO", "PO")
    sessie = str(uuid.uuid4())
    calls = {
        "whoami": ("GET", "/v1/whoami", None),
        "audit": ("GET", "/v1/audit", None),
        "check": (
            "POST",
            f"/v1/sessions/{sessie}/check",
            {
                "doel_brin": other.brin,
                "doel_routeringskenmerk": other.routeringskenmerk,
                "overdrachtsoort": "overstapdossier",
                "zoeksleutel": zoeksleutel_of(new_pgn()),
            },
        ),
        "close": (
            "POST",
            f"/v1/sessions/{sessie}/close",
            {"resultaat": "OverdrachtMislukt", "routeringskenmerk": other.routeringskenmerk},
        ),
        "dossier": (
            "POST",
            f"/v1/sessions/{sessie}/dossier",
            {
                "routeringskenmerk": other.routeringskenmerk,
                "zoeksleutel": zoeksleutel_of(new_pgn()),
            },
        ),
        "notification": (
            "POST",
            "/v1/notifications",
            {"sessie_id": sessie, "doel_routeringskenmerk": other.routeringskenmerk},
        ),
    }
    client = party.client()
    at_second(tc, 40, 5)
    try:
        answers: dict[str, list[httpx.Response]] = {}
        for name, (method, path, body) in calls.items():
            answers[name] = [await client.request(method, path, json=body) for _ in range(3)]
        # The budgets are the endpoint's, not the route's: another endpoint is unaffected.
        assert (await other.client().get("/v1/whoami")).status_code == 200
    finally:
        tc.clock.offset = dt.timedelta()
    for name, (first, second, third) in answers.items():
        assert 429 not in (first.status_code, second.status_code), name
        assert_problem(third, 429, "TeVeelVerzoeken")
        assert 1 <= int(third.headers["Retry-After"]) <= 120, name
    # Six 429s, one record so far: the rest are counted into the window's record.
    limited = [
        item.record
        async for item in tc.store.audit.walk()
        if item.record.caller_serial == party.serial and item.record.result == "TeVeelVerzoeken"
    ]
    assert [(r.type, r.subject) for r in limited] == [(AuditType.REFUSED_CALLER, "n=1")]


async def test_a_relay_over_its_budget_starts_nothing(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """A relay's hit is counted in the transaction of its started record: within the budget
    the dossier goes; over it the answer is 429 with a Retry-After, nothing is forwarded,
    nothing started, and the refusal is one counted record, as at any route's admission."""
    forwarded: list[httpx.Request] = []

    async def bron_las(request: httpx.Request) -> httpx.Response:
        forwarded.append(request)
        return dossier_answer()

    tc = await start_traffic_center(
        tmp_path,
        await database_factory("sqlite"),
        upstream_transport=httpx.MockTransport(bron_las),
        rate_limit_dossiers_per_minute=2,
    )
    try:
        bron = await tc.world.school("PO", url="https://bron.test/oso")
        doel = await tc.world.school("VO")
        opened = await messages.open_session(doel, bron)
        sessie_id = opened.json()["sessie_id"]
        asked = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": messages.ZOEKSLEUTEL}
        at_second(tc, 50, 5)
        client = doel.client()
        path = f"/v1/sessions/{sessie_id}/dossier"
        answers = [await client.post(path, json=asked) for _ in range(3)]
        relayed = await dossier_records(tc, sessie_id, finals=2)
        limited = [
            item.record
            async for item in tc.store.audit.walk()
            if item.record.caller_serial == doel.serial and item.record.result == "TeVeelVerzoeken"
        ]
    finally:
        tc.clock.offset = dt.timedelta()
        await tc.stop()
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert_problem(answers[2], 429, "TeVeelVerzoeken")
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 120
    assert len(forwarded) == 2
    delivered = [(Phase.STARTED, "Gestart"), (Phase.FINAL, "OverdrachtGeslaagd")]
    assert sorted(relayed) == sorted(delivered * 2)
    assert [(r.type, r.subject) for r in limited] == [(AuditType.REFUSED_CALLER, "n=1")]


async def dossier_records(
    tc: TrafficCenterUnderTest, sessie_id: str, *, finals: int
) -> list[tuple[Phase, str]]:
    """The session's dossier records, once ``finals`` final ones landed (each after its
    stream's last byte, so a moment after the answer)."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            (r.phase, r.result)
            for r in await tc.store.audit.for_session(sessie_id)
            if r.type is AuditType.DOSSIER
        ]
        if sum(phase is Phase.FINAL for phase, _ in found) >= finals:
            return found
        assert time.monotonic() < deadline, f"not {finals} final records: {found}"
        await asyncio.sleep(0.02)
