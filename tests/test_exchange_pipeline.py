"""One exchange, one pipeline: every exit of the runner leaves its record and its log line.

The Traffic Center runs for real (mTLS, uvicorn, SQLite); only the bron's side is a seam, an
``httpx.MockTransport`` the relay calls instead of a LAS, scripted per test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from structlog.testing import capture_logs

from tests.conftest import DatabaseFactory
from tests.support.messages import ZOEKSLEUTEL, open_session
from tests.support.pupils import new_pgn, zoeksleutel_of
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.world import Party
from traffic_center.audit.verify import verify_chain
from traffic_center.domain.audit import AuditRecord, AuditType, Phase

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
DOSSIER = b"<dossier xmlns='http://www.edustandaard.nl/oso_gegevensset/2019/dossier'/>" * 100


@dataclass
class ScriptedBron:
    """What the mock bron does with the next call; the calls it saw."""

    handler: Handler | None = None
    calls: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        assert self.handler is not None, "the test did not script the bron"
        return await self.handler(request)


@dataclass
class Pipeline:
    tc: TrafficCenterUnderTest
    bron_script: ScriptedBron
    doel: Party
    bron: Party


@pytest.fixture(scope="module")
async def pipeline(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    script = ScriptedBron()
    tc = await start_traffic_center(
        tmp_path_factory.mktemp("pipeline"),
        await database_factory("sqlite"),
        upstream_transport=httpx.MockTransport(script),
        relay_read_timeout_seconds=1.0,
    )
    bron = await tc.world.school("PO", url="https://bron.test/oso")
    doel = await tc.world.school("VO")
    yield Pipeline(tc, script, doel, bron)
    await tc.stop()


class Chunks(httpx.AsyncByteStream):
    """A body as a LAS sends it: streamed (a ``content=`` body would arrive already read)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), 4096):
            await asyncio.sleep(0)  # a network read gives the loop a turn
            yield self._body[start : start + 4096]


def dossier_answer(body: bytes = DOSSIER) -> httpx.Response:
    return httpx.Response(
        200,
        stream=Chunks(body),
        headers={
            "content-type": "application/xml",
            "content-length": str(len(body)),
            "x-oso-vrijgave": "inzage",
        },
    )


async def session(p: Pipeline) -> str:
    opened = await open_session(p.doel, p.bron)
    assert opened.status_code == 201, opened.text
    return str(opened.json()["sessie_id"])


async def ask_dossier(
    p: Pipeline, sessie_id: str, *, zoeksleutel: str = ZOEKSLEUTEL, give_up_after: float = 10
) -> httpx.Response:
    body = {"routeringskenmerk": p.bron.routeringskenmerk, "zoeksleutel": zoeksleutel}
    return await p.doel.client().post(
        f"/v1/sessions/{sessie_id}/dossier", json=body, timeout=give_up_after
    )


async def records(p: Pipeline, sessie_id: str, *, wait_for_final: bool = True) -> list[AuditRecord]:
    """The session's documentRequest records, once the final one has landed."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            r for r in await p.tc.store.audit.for_session(sessie_id) if r.type is AuditType.DOSSIER
        ]
        if not wait_for_final or any(r.phase is Phase.FINAL for r in found):
            return found
        assert time.monotonic() < deadline, f"no final record: {found}"
        await asyncio.sleep(0.02)


async def logged(logs: list[dict[str, Any]], request_id: str) -> None:
    deadline = time.monotonic() + 5
    while not any(x.get("request_id") == request_id for x in logs):
        assert time.monotonic() < deadline, f"no log line with request id {request_id}"
        await asyncio.sleep(0.01)


def exchange_lines(logs: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [x for x in logs if x.get("request_id") == request_id and x["event"] == "exchange"]


async def test_success_writes_started_then_final_and_one_info_line(pipeline: Pipeline) -> None:
    sessie_id = await session(pipeline)

    async def answer(_request: httpx.Request) -> httpx.Response:
        return dossier_answer()

    pipeline.bron_script.handler = answer
    with capture_logs() as logs:
        answered = await ask_dossier(pipeline, sessie_id)
        found = await records(pipeline, sessie_id)
    assert answered.status_code == 200
    assert answered.content == DOSSIER
    started, final = found
    assert (started.phase, started.result, started.http_status) == (Phase.STARTED, "Gestart", None)
    assert (final.phase, final.result, final.http_status) == (
        Phase.FINAL,
        "OverdrachtGeslaagd",
        200,
    )
    assert started.transaction_id == final.transaction_id == answered.headers["x-oso-transactie-id"]
    assert final.size_bytes == len(DOSSIER)
    assert started.recorded_at <= final.recorded_at
    [line] = exchange_lines(logs, answered.headers["x-request-id"])
    assert (line["log_level"], line["result"], line["recorded"]) == (
        "info",
        "OverdrachtGeslaagd",
        True,
    )


async def test_a_domain_error_is_recorded_against_the_session_and_nothing_is_forwarded(
    pipeline: Pipeline,
) -> None:
    sessie_id = await session(pipeline)
    calls = len(pipeline.bron_script.calls)
    with capture_logs() as logs:
        answered = await ask_dossier(pipeline, sessie_id, zoeksleutel=zoeksleutel_of(new_pgn()))
        found = await records(pipeline, sessie_id)
    assert (answered.status_code, answered.json()["code"]) == (409, "SessieAfwijkend")
    assert len(pipeline.bron_script.calls) == calls
    [final] = found  # refused before forwarding: no started record
    assert (final.result, final.http_status, final.doel_routeringskenmerk) == (
        "SessieAfwijkend",
        409,
        pipeline.doel.routeringskenmerk,
    )
    [line] = exchange_lines(logs, answered.headers["x-request-id"])
    assert line["result"] == "SessieAfwijkend"
    # An error answer names its record, as a relay's 200 does.
    assert answered.headers["x-oso-transactie-id"] == final.transaction_id == line["transaction_id"]


async def test_an_unexpected_exception_is_a_recorded_500_and_its_message_stays_out_of_the_log(
    pipeline: Pipeline,
) -> None:
    sessie_id = await session(pipeline)

    async def explode(_request: httpx.Request) -> httpx.Response:
        raise RuntimeError("secret-canary-7731 from deep inside")

    pipeline.bron_script.handler = explode
    with capture_logs() as logs:
        answered = await ask_dossier(pipeline, sessie_id)
        found = await records(pipeline, sessie_id)
    assert answered.status_code == 500
    assert answered.headers["content-type"] == "application/problem+json"
    assert answered.json()["code"] == "InterneFout"
    started, final = found
    assert started.phase is Phase.STARTED
    assert (final.result, final.http_status) == ("InterneFout", 500)
    request_id = answered.headers["x-request-id"]
    assert answered.headers["x-oso-transactie-id"] == final.transaction_id
    [line] = exchange_lines(logs, request_id)
    assert line["log_level"] == "error"
    [internal] = [x for x in logs if x["event"] == "exchange_internal_error"]
    assert internal["error"] == "RuntimeError"
    assert internal["transaction_id"] == final.transaction_id
    assert "secret-canary-7731" not in repr(logs)


async def test_a_doel_hanging_up_before_the_bron_answers_is_recorded_as_such(
    pipeline: Pipeline,
) -> None:
    """The server notices when it answers: the stream to a gone doel is not sent."""
    sessie_id = await session(pipeline)

    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return dossier_answer(DOSSIER * 50)

    pipeline.bron_script.handler = slow
    with pytest.raises(httpx.ReadTimeout):
        await ask_dossier(pipeline, sessie_id, give_up_after=0.3)
    started, final = await records(pipeline, sessie_id)
    assert started.phase is Phase.STARTED
    assert final.result == "AfgebrokenDoorDoel"
    assert final.size_bytes is not None
    assert final.size_bytes < len(DOSSIER * 50)


async def test_a_bron_breaking_off_mid_stream_is_a_failed_transfer_on_record(
    pipeline: Pipeline,
) -> None:
    sessie_id = await session(pipeline)

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield DOSSIER[:1000]
            raise httpx.ReadError("the bron's connection dropped")

    async def breaks(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=Broken(),
            headers={
                "content-type": "application/xml",
                "content-length": str(len(DOSSIER)),
                "x-oso-vrijgave": "inzage",
            },
        )

    pipeline.bron_script.handler = breaks
    with pytest.raises(httpx.TransportError):
        await ask_dossier(pipeline, sessie_id)
    started, final = await records(pipeline, sessie_id)
    assert started.phase is Phase.STARTED
    assert (final.result, final.size_bytes) == ("OverdrachtMislukt", 1000)


async def test_close_is_held_to_what_the_traffic_center_saw(pipeline: Pipeline) -> None:
    """OverdrachtGeslaagd needs a delivered dossier; SessieAfwijkend is no closing result."""
    sessie_id = await session(pipeline)
    close = f"/v1/sessions/{sessie_id}/close"
    claim = {
        "resultaat": "OverdrachtGeslaagd",
        "routeringskenmerk": pipeline.bron.routeringskenmerk,
    }
    early = await pipeline.doel.client().post(close, json=claim)
    assert (early.status_code, early.json()["code"]) == (409, "ResultaatNietVastgesteld")
    odd = {**claim, "resultaat": "SessieAfwijkend"}
    refused = await pipeline.doel.client().post(close, json=odd)
    assert (refused.status_code, refused.json()["code"]) == (422, "OngeldigResultaat")

    async def answer(_request: httpx.Request) -> httpx.Response:
        return dossier_answer()

    pipeline.bron_script.handler = answer
    assert (await ask_dossier(pipeline, sessie_id)).status_code == 200
    await records(pipeline, sessie_id)
    closed = await pipeline.doel.client().post(close, json=claim)
    assert closed.status_code == 200, closed.text
    assert closed.json()["resultaat"] == "OverdrachtGeslaagd"


async def test_a_truncated_transfer_cannot_be_closed_as_delivered(pipeline: Pipeline) -> None:
    sessie_id = await session(pipeline)

    class Short(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield DOSSIER[:10]
            raise httpx.RemoteProtocolError("peer closed connection")

    async def short(_request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/xml", "x-oso-vrijgave": "inzage"}
        return httpx.Response(200, stream=Short(), headers={**headers, "content-length": "99"})

    pipeline.bron_script.handler = short
    with pytest.raises(httpx.TransportError):
        await ask_dossier(pipeline, sessie_id)
    await records(pipeline, sessie_id)
    claim = {
        "resultaat": "OverdrachtGeslaagd",
        "routeringskenmerk": pipeline.bron.routeringskenmerk,
    }
    refused = await pipeline.doel.client().post(f"/v1/sessions/{sessie_id}/close", json=claim)
    assert (refused.status_code, refused.json()["code"]) == (409, "ResultaatNietVastgesteld")
    honest = {**claim, "resultaat": "OverdrachtMislukt"}
    closed = await pipeline.doel.client().post(f"/v1/sessions/{sessie_id}/close", json=honest)
    assert closed.status_code == 200


async def test_every_refusal_and_every_answer_outside_an_exchange_has_a_log_line(
    pipeline: Pipeline,
) -> None:
    client = pipeline.doel.client()
    with capture_logs() as logs:
        unknown_path = await client.get("/v1/nothing-here")
        bad_body = await client.post("/v1/sessions", json={"bron_brin": 12})
        # The backstop line is written as the answer leaves: give the server's thread a moment.
        for answered in (unknown_path, bad_body):
            await logged(logs, answered.headers["x-request-id"])
    for answered in (unknown_path, bad_body):
        request_id = answered.headers["x-request-id"]
        lines = [x for x in logs if x.get("request_id") == request_id]
        assert lines[-1]["status"] == answered.status_code
        assert lines[-1]["code"] == answered.json()["code"]
        # Refused before any exchange began: there is no record to name.
        assert "x-oso-transactie-id" not in answered.headers


async def test_a_refused_caller_is_a_warning_naming_its_certificate_never_its_body(
    pipeline: Pipeline,
) -> None:
    stranger = await pipeline.tc.world.school("VO", register_endpoint=False)
    pem = x509.load_pem_x509_certificate(stranger.cert.read_bytes())
    with capture_logs() as logs:
        refused = await open_session(stranger, pipeline.bron)
        await logged(logs, refused.headers["x-request-id"])
    assert refused.status_code == 403
    [line] = exchange_lines(logs, refused.headers["x-request-id"])
    assert (line["log_level"], line["type"], line["status"]) == ("warning", "aanroepGeweigerd", 403)
    assert line["caller_serial"] == stranger.serial
    # The fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it.
    assert line["caller_fingerprint"] == pem.fingerprint(hashes.SHA256()).hex(":").upper()
    assert refused.headers["x-oso-transactie-id"] == line["transaction_id"]
    assert ZOEKSLEUTEL not in repr(logs)  # the body's secret, as an example


@pytest.mark.parametrize(
    ("sent", "logged_as"),
    [
        (
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("00-secret-canary-9034-01", "malformed"),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "malformed"),
        (None, None),
    ],
)
async def test_the_callers_traceparent_is_on_the_exchange_line_only_when_well_formed(
    pipeline: Pipeline, sent: str | None, logged_as: str | None
) -> None:
    headers = {"traceparent": sent} if sent is not None else {}
    with capture_logs() as logs:
        answered = await pipeline.doel.client().get(
            "/v1/endpoints", params={"brin": pipeline.bron.brin}, headers=headers
        )
        await logged(logs, answered.headers["x-request-id"])
    assert answered.status_code == 200
    [line] = exchange_lines(logs, answered.headers["x-request-id"])
    assert line["traceparent"] == logged_as
    assert answered.headers["x-oso-transactie-id"] == line["transaction_id"]
    assert "secret-canary-9034" not in repr(logs)


async def test_the_chain_verifies_after_every_exit(pipeline: Pipeline) -> None:
    verdict = await verify_chain(pipeline.tc.store, pipeline.tc.secret)
    assert verdict.broken is None
    assert verdict.checked >= 10
