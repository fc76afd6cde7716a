"""Rule 9: per-endpoint rate limits on session creation and the endpoint overview (both backends)."""

from __future__ import annotations

import datetime as dt

from tests.support.server import TrafficCenterUnderTest
from tests.test_broker_api import assert_problem, open_session

TRAFFIC_CENTER_SETTINGS = {
    "rate_limit_sessions_per_minute": 3,
    "rate_limit_endpoints_per_minute": 2,
}


async def test_session_creation_is_limited_per_endpoint(tc: TrafficCenterUnderTest) -> None:
    doel, other, bron = await tc.world.schools("PO", "PO", "PO")
    tc.clock.offset = dt.timedelta(minutes=10)  # a fresh window, whatever ran before
    try:
        statuses = [(await open_session(doel, bron)).status_code for _ in range(3)]
        limited = await open_session(doel, bron)
        # Another endpoint has its own budget.
        assert (await open_session(other, bron)).status_code == 201
        tc.clock.offset += dt.timedelta(minutes=1)
        after_window = await open_session(doel, bron)
    finally:
        tc.clock.offset = dt.timedelta()
    assert statuses == [201, 201, 201]
    assert_problem(limited, 429, "TeVeelVerzoeken")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert after_window.status_code == 201


async def test_endpoint_overview_is_limited_per_endpoint(tc: TrafficCenterUnderTest) -> None:
    asking = await tc.world.school("VO")
    tc.clock.offset = dt.timedelta(minutes=20)
    try:
        client = asking.client()
        statuses = [(await client.get("/v1/endpoints")).status_code for _ in range(3)]
    finally:
        tc.clock.offset = dt.timedelta()
    assert statuses[:2] == [200, 200]
    assert statuses[2] == 429
