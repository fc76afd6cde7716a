"""The reference doel's session open retries as the TC asks: after 429 (or 503) with
Retry-After, that long later, and after a lost answer; always with the same Idempotency-Key.
The TC is faked at the transport seam; tests/test_qualify_doel.py runs it against a real one."""

from __future__ import annotations

import time

import httpx
import pytest

from traffic_center.las.doel import DoelClient, TrafficCenterRefused, TrafficCenterUnreachable
from traffic_center.las.pupils import pupil_with

GRANTED = {
    "sessie_id": "6f1c8f1e-2b7a-4d55-9c1e-3c9b0f0b7a11",
    "bron_endpoints": [{"routeringskenmerk": "00000007000000990001", "url": "https://b"}],
    "expires_at": "2026-12-02T00:00:00Z",
}


def limited(retry_after: str | None, status: int = 429) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"code": "TeVeelVerzoeken", "status": status}
    return httpx.Response(status, json=body, headers=headers)


class ScriptedTC:
    """Answers each POST /v1/sessions with the next scripted answer; keeps what it saw."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.keys: list[str | None] = []
        self.at: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        self.at.append(time.monotonic())
        answer = self.answers.pop(0) if self.answers else httpx.Response(201, json=GRANTED)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(tc: ScriptedTC) -> DoelClient:
    return DoelClient("https://tc.test", transport=httpx.MockTransport(tc))


async def test_a_429_is_retried_after_its_retry_after_with_the_same_key() -> None:
    tc = ScriptedTC(limited("1"))
    async with client(tc) as doel:
        granted = await doel.open_session("00YY", pupil_with("gereed"))
    assert granted.sessie_id == GRANTED["sessie_id"]
    assert len(tc.keys) == 2
    assert tc.keys[0] is not None
    assert tc.keys[0] == tc.keys[1]
    assert tc.at[1] - tc.at[0] >= 1.0


async def test_a_lost_answer_is_retried_with_the_same_key_and_a_given_key_is_used() -> None:
    tc = ScriptedTC(httpx.ReadTimeout("no answer"), limited("0", status=503))
    async with client(tc) as doel:
        await doel.open_session("00YY", pupil_with("gereed"), idempotency_key="open-1")
    assert tc.keys == ["open-1", "open-1", "open-1"]


async def test_each_open_has_its_own_key() -> None:
    tc = ScriptedTC()
    async with client(tc) as doel:
        await doel.open_session("00YY", pupil_with("gereed"))
        await doel.open_session("00YY", pupil_with("gereed"))
    assert len(set(tc.keys)) == 2


@pytest.mark.parametrize(
    "answer",
    [
        limited(None),  # no Retry-After: the caller decides
        limited("3600"),  # longer than one call should wait
        limited(None, status=503),
        httpx.Response(409, json={"code": "VerstrekkerNietBekend"}),
    ],
)
async def test_what_is_not_retried_comes_back_at_once(answer: httpx.Response) -> None:
    tc = ScriptedTC(answer)
    async with client(tc) as doel:
        with pytest.raises(TrafficCenterRefused) as refused:
            await doel.open_session("00YY", pupil_with("gereed"))
    assert len(tc.keys) == 1
    assert refused.value.status == answer.status_code
    assert refused.value.retry_after == (3600.0 if answer.headers.get("Retry-After") else None)


async def test_a_refused_connection_is_not_retried_and_retries_end() -> None:
    refused_connection = ScriptedTC(httpx.ConnectError("refused"))
    async with client(refused_connection) as doel:
        with pytest.raises(TrafficCenterUnreachable):
            await doel.open_session("00YY", pupil_with("gereed"))
    assert len(refused_connection.keys) == 1
    always_limited = ScriptedTC(*(limited("0") for _ in range(5)))
    async with client(always_limited) as doel:
        with pytest.raises(TrafficCenterRefused):
            await doel.open_session("00YY", pupil_with("gereed"))
    assert len(always_limited.keys) == 3  # OPEN_ATTEMPTS
