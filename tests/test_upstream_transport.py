"""The relay's upstream transport (aiohttp under httpx) against a hostile bron.

The bron here is a raw TLS socket server (tests/support/hostile.py), with a LAS server
certificate from the test world, so it can answer what no HTTP server library would send: headers in
one-byte writes, broken chunked framing, a body shorter than announced, megabytes of headers,
a connection closed early, bytes trickled slower than the read timeout. Each failure must
reach the doel as the relay's existing code (or a broken transfer) and land in the audit
trail as such; a good dossier must arrive byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import httpx
import pytest
import uvloop

from tests.support.hostile import Exchange, HostileBron, Scenario
from tests.support.las import LasParty, LasWorld, scenario_key
from tests.support.processes import free_port
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.world import client_context
from tests.test_monitoring import sample
from tests.test_relay import Fetched, eventually_recorded, fetch, open_session, relay_records
from traffic_center.domain.errors import UpstreamTimeout, UpstreamUnreachable
from traffic_center.relay.aiohttp_transport import _peer_has_spoken
from traffic_center.relay.limits import RelayLimits
from traffic_center.relay.upstream import UpstreamClient, upstream_ssl_context

MB = 1024 * 1024
READ_TIMEOUT = 1.0

# The whole relay at most (TC_RELAY_TOTAL_SECONDS): short, so a test can outlast it.
TOTAL_SECONDS = 5.0
TRAFFIC_CENTER_SETTINGS = {
    "relay_read_timeout_seconds": READ_TIMEOUT,
    "relay_connect_timeout_seconds": 2.0,
    "relay_max_dossier_bytes": 64 * MB,
    "relay_total_seconds": TOTAL_SECONDS,
}

# What a hostile bron tries to push as answer headers before giving up.
HEADER_FLOOD_BYTES = 64 * MB


def dossier_bytes(size: int, seed: int = 14) -> bytes:
    return random.Random(seed).randbytes(size)


def head(*, length: int | None = None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/xml\r\n"
        "X-OSO-Vrijgave: toestemming\r\n"
        f"{framing}\r\n{extra}\r\n"
    ).encode()


GOOD = dossier_bytes(3 * MB)
GOOD_SHA256 = hashlib.sha256(GOOD).hexdigest()


async def whole(exchange: Exchange) -> bool:
    await exchange.send(head(length=len(GOOD)) + GOOD)
    return True


async def chunked_in_odd_pieces(exchange: Exchange) -> bool:
    await exchange.send(head())
    pieces = random.Random(1)
    at = 0
    while at < len(GOOD):
        size = pieces.choice([1, 7, 4093, 16_385, 200_000])
        piece = GOOD[at : at + size]
        await exchange.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        at += size
    await exchange.send(b"0\r\n\r\n")
    return True


async def headers_in_tiny_writes(exchange: Exchange) -> bool:
    """Every byte of the answer head its own write (and TLS record), then the body."""
    for byte in head(length=len(GOOD)):
        await exchange.send(bytes([byte]))
        await asyncio.sleep(0.001)
    await exchange.send(GOOD)
    return True


async def bad_chunk_size(exchange: Exchange) -> bool:
    await exchange.send(head() + b"1000\r\n" + GOOD[:4096] + b"\r\n")
    await asyncio.sleep(0.2)  # the doel has the headers and a first chunk by now
    await exchange.send(b"zz\r\n" + GOOD[:64] + b"\r\n")
    await exchange.until_hung_up(5)
    return False


async def shorter_than_announced(exchange: Exchange) -> bool:
    await exchange.send(head(length=1_000_000) + GOOD[:100_000])
    await asyncio.sleep(0.2)
    return False  # and close


async def flood_of_header(exchange: Exchange, *, line: bytes) -> bool:
    """Answer headers of up to HEADER_FLOOD_BYTES, until the relay hangs up."""
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n")
    piece = line * (64 * 1024 // len(line))
    while exchange.flooded < HEADER_FLOOD_BYTES:
        await exchange.send(piece)
        exchange.flooded += len(piece)

    return False


async def closed_before_answering(exchange: Exchange) -> bool:
    return False


async def head_trickled(exchange: Exchange) -> bool:
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
    await exchange.until_hung_up(3 * READ_TIMEOUT)
    return False


async def body_trickled(exchange: Exchange) -> bool:
    await exchange.send(head(length=len(GOOD)) + GOOD[:10])
    for at in range(10, 20):
        await asyncio.sleep(READ_TIMEOUT * 1.5)
        await exchange.send(GOOD[at : at + 1])
    return False


async def echo_headers(exchange: Exchange) -> bool:
    await exchange.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    return True


async def setting_a_cookie(exchange: Exchange) -> bool:
    await exchange.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Set-Cookie: tracker=doel-of-the-last-relay; Path=/\r\n\r\n{}"
    )
    return True


def scenarios() -> dict[str, Scenario]:
    async def long_line(exchange: Exchange) -> bool:
        return await flood_of_header(exchange, line=b"X-Filler: " + b"a" * 1024)

    async def many_headers(exchange: Exchange) -> bool:
        return await flood_of_header(exchange, line=b"X-Many: a\r\n")

    return {
        "whole": whole,
        "chunked": chunked_in_odd_pieces,
        "split-head": headers_in_tiny_writes,
        "bad-chunk": bad_chunk_size,
        "short": shorter_than_announced,
        "long-line": long_line,
        "many-headers": many_headers,
        "closed": closed_before_answering,
        "head-trickle": head_trickled,
        "body-trickle": body_trickled,
        "echo": echo_headers,
        "cookie": setting_a_cookie,
    }


# --- fixtures: one Traffic Center (SQLite: the transport does not care), one hostile bron -----


@pytest.fixture(scope="module")
async def tc(
    database_factory: Callable[[str], Awaitable[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TrafficCenterUnderTest]:
    home = tmp_path_factory.mktemp("tc-upstream")
    running = await start_traffic_center(
        home, await database_factory("sqlite"), **TRAFFIC_CENTER_SETTINGS
    )
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def hostile(tc: TrafficCenterUnderTest) -> AsyncIterator[HostileBron]:
    prefix = tc.settings.home / "hostile-bron"
    await tc.certificates.issue_server(hosts=["127.0.0.1"], out=prefix)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tc.ca_pem))
    context.verify_mode = ssl.CERT_REQUIRED  # mTLS, like every LAS
    context.load_cert_chain(
        str(prefix.with_name(prefix.name + ".pem")), str(prefix.with_name(prefix.name + ".key"))
    )
    bron = HostileBron(context, scenarios())
    await bron.start()
    yield bron
    await bron.stop()


@pytest.fixture(scope="module")
async def doel(las: LasWorld) -> LasParty:
    return await las.school("VO")


async def relayed(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron, scenario: str
) -> tuple[str, Fetched]:
    """A documentRequest through the Traffic Center to a bron answering by ``scenario``."""
    bron = await tc.world.school("PO", register_endpoint=False)
    await las.register(bron, hostile.url(scenario))
    key = scenario_key("onbekend")
    sessie_id = await open_session(doel.party, bron, key)
    return sessie_id, await fetch(doel.party, sessie_id, bron.routeringskenmerk, key)


# --- through the Traffic Center --------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["whole", "chunked", "split-head"])
async def test_a_dossier_arrives_byte_identical_however_the_bron_writes_it(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron, scenario: str
) -> None:
    sessie_id, fetched = await relayed(tc, las, doel, hostile, scenario)
    assert (fetched.status, fetched.complete) == (200, True)
    assert (fetched.size, fetched.sha256) == (len(GOOD), GOOD_SHA256)
    [record] = await eventually_recorded(tc, sessie_id)
    assert (record.result, record.size_bytes, record.sha256) == (
        "OverdrachtGeslaagd",
        len(GOOD),
        GOOD_SHA256,
    )


@pytest.mark.parametrize("scenario", ["bad-chunk", "short", "body-trickle"])
async def test_a_body_that_breaks_reaches_the_doel_as_a_broken_transfer(
    tc: TrafficCenterUnderTest,
    las: LasWorld,
    doel: LasParty,
    hostile: HostileBron,
    scenario: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = time.monotonic()
    caplog.set_level(logging.INFO)
    sessie_id, fetched = await relayed(tc, las, doel, hostile, scenario)
    assert fetched.status == 200  # the headers had gone out before the body broke
    assert not fetched.complete
    assert fetched.size < len(GOOD)
    [record] = await eventually_recorded(tc, sessie_id)
    assert record.result == "OverdrachtMislukt"
    # Recorded, and logged by its exchange's line: no bug, so no error line says there was.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # A trickle is cut at the first silence longer than the read timeout, not at the end.
    assert time.monotonic() - started < 3 * READ_TIMEOUT + 3


@pytest.mark.parametrize("scenario", ["long-line", "many-headers"])
async def test_huge_answer_headers_are_refused_without_reading_them_all(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron, scenario: str
) -> None:
    """The LAS was reached and answered: its answer is what the contract does not allow (it
    was AanleverpuntOnbereikbaar, "connection or TLS failure", which sent its vendor looking
    at the network)."""
    sessie_id, fetched = await relayed(tc, las, doel, hostile, scenario)
    assert fetched.outcome == (502, "OngeldigAntwoordAanleverpunt")
    [record] = await relay_records(tc, sessie_id)
    assert (record.result, record.upstream_status) == ("OngeldigAntwoordAanleverpunt", None)
    # The relay hung up at its limit: the bron got out no more than the sockets' buffers hold
    # (a few MB on loopback), not its 64 MB.
    assert hostile.requests[-1].flooded < HEADER_FLOOD_BYTES / 4


async def both_framings(exchange: Exchange) -> bool:
    """Content-Length and Transfer-Encoding: chunked together, a valid chunked body: a
    request-smuggling pattern llhttp refuses (RFC 9112 §6.1 lets a server send one only)."""
    framing = head().replace(
        b"Transfer-Encoding: chunked",
        f"Transfer-Encoding: chunked\r\nContent-Length: {len(GOOD)}".encode(),
    )
    await exchange.send(framing + b"%x\r\n" % len(GOOD) + GOOD + b"\r\n0\r\n\r\n")
    return False


async def cut_short_after_chunked_identity(exchange: Exchange) -> bool:
    """Framed until the close (chunked is not the last coding), and closed at 40,000 bytes:
    a crash halfway, which the close would make look like the whole dossier."""
    framing = head().replace(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, identity")
    await exchange.send(framing + GOOD[:40_000])
    return False


@pytest.mark.parametrize("answering", [cut_short_after_chunked_identity, both_framings])
async def test_an_answer_framed_against_the_contract_is_an_invalid_answer(
    tc: TrafficCenterUnderTest,
    las: LasWorld,
    doel: LasParty,
    hostile: HostileBron,
    answering: Scenario,
) -> None:
    """Framed by the close whatever its codings, or by two framings at once: the LAS was
    reached and answered, and its answer is what the contract does not allow (two framings
    were AanleverpuntOnbereikbaar, "connection or TLS failure")."""
    hostile.scenarios[answering.__name__] = answering
    sessie_id, fetched = await relayed(tc, las, doel, hostile, answering.__name__)
    assert fetched.outcome == (502, "OngeldigAntwoordAanleverpunt")
    [record] = await relay_records(tc, sessie_id)
    assert record.result == "OngeldigAntwoordAanleverpunt"


async def interim_answers_for_ever(exchange: Exchange) -> bool:
    """ "102 Processing" every half read timeout: each a byte in time, none the answer."""
    while True:
        await exchange.send(b"HTTP/1.1 102 Processing\r\n\r\n")
        await asyncio.sleep(READ_TIMEOUT / 2)


async def head_a_byte_at_a_time(exchange: Exchange) -> bool:
    for byte in head(length=len(GOOD)):
        await exchange.send(bytes([byte]))
        await asyncio.sleep(READ_TIMEOUT / 2)
    return False


@pytest.mark.parametrize("answering", [interim_answers_for_ever, head_a_byte_at_a_time])
async def test_the_relay_s_deadline_counts_before_the_answer_s_head_too(
    tc: TrafficCenterUnderTest,
    las: LasWorld,
    doel: LasParty,
    hostile: HostileBron,
    answering: Scenario,
) -> None:
    """Each byte within the read timeout, the head never done: the relay ends at its
    deadline (504), its slot back, not when the bron gives up."""
    hostile.scenarios["never-done"] = answering
    started = time.monotonic()
    sessie_id, fetched = await relayed(tc, las, doel, hostile, "never-done")
    assert fetched.outcome == (504, "AanleverpuntTijdslimiet")
    assert TOTAL_SECONDS <= time.monotonic() - started < TOTAL_SECONDS + 3
    [record] = await relay_records(tc, sessie_id)
    assert record.result == "AanleverpuntTijdslimiet"
    assert sample(tc, "traffic_center_relays_in_flight") == 0


async def test_a_bron_closing_before_it_answers_is_502(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron
) -> None:
    sessie_id, fetched = await relayed(tc, las, doel, hostile, "closed")
    assert fetched.outcome == (502, "AanleverpuntOnbereikbaar")
    [record] = await relay_records(tc, sessie_id)
    assert record.result == "AanleverpuntOnbereikbaar"


async def test_answer_headers_trickled_past_the_read_timeout_are_504(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron
) -> None:
    started = time.monotonic()
    sessie_id, fetched = await relayed(tc, las, doel, hostile, "head-trickle")
    elapsed = time.monotonic() - started
    assert fetched.outcome == (504, "AanleverpuntTijdslimiet")
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 3
    [record] = await relay_records(tc, sessie_id)
    assert record.result == "AanleverpuntTijdslimiet"


async def slowly(exchange: Exchange) -> bool:
    """Six KiB in six chunks, 0.3 s apart: a relay that is still running when looked at."""
    await exchange.send(head())
    for _ in range(6):
        await exchange.send(b"400\r\n" + b"x" * 1024 + b"\r\n")
        await asyncio.sleep(0.3)
    await exchange.send(b"0\r\n\r\n")
    return False


async def test_a_doel_hanging_up_on_pipelined_requests_stops_the_relay_running(
    tc: TrafficCenterUnderTest,
    las: LasWorld,
    doel: LasParty,
    hostile: HostileBron,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Four documentRequests pipelined on one connection; the doel hangs up while the second
    streams. uvicorn told only the last request parsed (a queued one) that the connection
    was gone: the running relay streamed on until a write into the closed TLS transport
    raised AttributeError (an error line, a traceback). It is told, and ends recorded as
    broken off by the doel; the queued ones are never relayed."""
    caplog.set_level(logging.INFO)
    hostile.scenarios["slowly"] = slowly
    bron = await tc.world.school("PO", register_endpoint=False)
    await las.register(bron, hostile.url("slowly"))
    key = scenario_key("onbekend")
    sessie_id = await open_session(doel.party, bron, key)
    body = f'{{"routeringskenmerk": "{bron.routeringskenmerk}", "zoeksleutel": "{key}"}}'
    request = (
        f"POST /v1/sessions/{sessie_id}/dossier HTTP/1.1\r\nHost: tc\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    context = client_context(doel.party.ca_pem, doel.party.cert, doel.party.key)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(tc.url.rsplit(":", 1)[1]), ssl=context, server_hostname="127.0.0.1"
    )
    writer.write(request * 4)
    received = b""
    async with asyncio.timeout(15):
        while received.count(b"HTTP/1.1 200") < 2:  # the second relay has begun
            received += await reader.read(65536)
    writer.close()
    deadline = time.monotonic() + 10
    while len(records := await relay_records(tc, sessie_id)) < 2:
        assert time.monotonic() < deadline, records
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # time for a queued request to be (wrongly) relayed
    results = [r.result for r in await relay_records(tc, sessie_id)]
    assert results == ["OverdrachtGeslaagd", "AfgebrokenDoorDoel"]
    assert sample(tc, "traffic_center_relays_in_flight") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- the transport under the relay's client, on its own ----------------------------------------


@pytest.fixture
async def upstream(tc: TrafficCenterUnderTest) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(LIMITS, ssl_context=relay_context(tc))
    yield client
    await client.aclose()


LIMITS = RelayLimits(
    connect_timeout_seconds=2,
    read_timeout_seconds=READ_TIMEOUT,
    max_dossier_bytes=64 * MB,
    max_in_flight=4,
)
SOME_REQUEST = {"sessie_id": "x"}
SOME_HEADERS = {"X-OSO-Transactie-Id": "t-1", "Accept": "application/xml"}


def relay_context(tc: TrafficCenterUnderTest) -> ssl.SSLContext:
    settings = tc.settings
    return upstream_ssl_context(
        cert=settings.upstream_cert_path,
        key=settings.upstream_key_path,
        trust=settings.upstream_trust_path,
    )


async def read_all(upstream: UpstreamClient, response: httpx.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await upstream.release(response)


async def test_the_bron_sees_the_same_request_headers_as_from_httpx_s_own_transport(
    tc: TrafficCenterUnderTest, hostile: HostileBron, upstream: UpstreamClient
) -> None:
    """No User-Agent, Accept, Accept-Encoding, Content-Type or cookie of aiohttp's own."""
    httpx_own = UpstreamClient(LIMITS, transport=httpx.AsyncHTTPTransport(verify=relay_context(tc)))
    seen = []
    for client in (upstream, httpx_own):
        response = await client.open(hostile.url("echo"), SOME_REQUEST, SOME_HEADERS)
        await read_all(client, response)
        seen.append(sorted((name.lower(), value) for name, value in hostile.requests[-1].headers))
    await httpx_own.aclose()
    assert seen[0] == seen[1]
    assert {name for name, _ in seen[0]} == {
        "host",
        "accept",
        "accept-encoding",
        "user-agent",
        "content-type",
        "content-length",
        "x-oso-transactie-id",
    }
    assert ("accept-encoding", "identity") in seen[0]


async def test_a_cookie_a_bron_sets_is_never_sent_on_a_later_relay(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    """One client serves every doel's relays: a cookie kept from one relay and sent on the
    next would let a bron link relays of different schools (and httpx keeps cookies)."""
    response = await upstream.open(hostile.url("cookie"), SOME_REQUEST, SOME_HEADERS)
    await read_all(upstream, response)
    assert response.headers["set-cookie"].startswith("tracker=")  # it was offered
    response = await upstream.open(hostile.url("echo"), SOME_REQUEST, SOME_HEADERS)
    await read_all(upstream, response)
    assert "cookie" not in {name.lower() for name, _ in hostile.requests[-1].headers}


async def test_a_connection_is_reused_only_after_its_answer_was_read_to_the_end(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    before = hostile.connections
    for _ in range(3):
        response = await upstream.open(hostile.url("whole"), SOME_REQUEST, SOME_HEADERS)
        assert hashlib.sha256(await read_all(upstream, response)).hexdigest() == GOOD_SHA256
    assert hostile.connections == before + 1  # kept alive

    half_read = await upstream.open(hostile.url("whole"), SOME_REQUEST, SOME_HEADERS)
    async for _ in half_read.aiter_raw():
        break
    await upstream.release(half_read)
    response = await upstream.open(hostile.url("whole"), SOME_REQUEST, SOME_HEADERS)
    # A new connection: the rest of the half-read answer must not be read as the next one.
    assert hostile.connections == before + 2
    assert hashlib.sha256(await read_all(upstream, response)).hexdigest() == GOOD_SHA256


async def test_a_slow_reader_is_not_the_bron_s_silence(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    """While the doel is slow, buffered bytes wait and reading pauses; that is no timeout."""
    response = await upstream.open(hostile.url("whole"), SOME_REQUEST, SOME_HEADERS)
    received = bytearray()
    try:
        async for chunk in response.aiter_raw():
            if not received:
                await asyncio.sleep(2.5 * READ_TIMEOUT)  # the bron has long sent it all
            received += chunk
    finally:
        await upstream.release(response)
    assert hashlib.sha256(received).hexdigest() == GOOD_SHA256


async def test_a_relay_cancelled_mid_body_closes_its_connection(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    response = await upstream.open(hostile.url("body-trickle"), SOME_REQUEST, SOME_HEADERS)
    exchange = hostile.requests[-1]

    async def read() -> None:
        async for _ in response.aiter_raw():
            pass

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await upstream.release(response)
    await exchange.until_hung_up(2)
    assert exchange.reader.at_eof() or exchange.reader.exception() is not None
    # The client is fine for the next relay.
    response = await upstream.open(hostile.url("whole"), SOME_REQUEST, SOME_HEADERS)
    assert len(await read_all(upstream, response)) == len(GOOD)


async def test_closing_the_client_closes_its_kept_alive_connections(
    tc: TrafficCenterUnderTest, hostile: HostileBron
) -> None:
    upstream = UpstreamClient(LIMITS, ssl_context=relay_context(tc))
    response = await upstream.open(hostile.url("echo"), SOME_REQUEST, SOME_HEADERS)
    await read_all(upstream, response)
    exchange = hostile.requests[-1]
    await upstream.aclose()
    await exchange.until_hung_up(2)
    assert exchange.reader.at_eof() or exchange.reader.exception() is not None


async def test_failures_before_the_answer_map_to_the_relay_s_errors(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    with pytest.raises(UpstreamUnreachable):
        await upstream.open(f"https://127.0.0.1:{free_port()}/x", SOME_REQUEST, SOME_HEADERS)
    with pytest.raises(UpstreamUnreachable, match="RemoteProtocolError"):
        await upstream.open(hostile.url("closed"), SOME_REQUEST, SOME_HEADERS)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="ReadTimeout"):
        await upstream.open(hostile.url("head-trickle"), SOME_REQUEST, SOME_HEADERS)
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + 1


async def test_a_bron_that_never_finishes_the_tls_handshake_is_a_connect_timeout(
    upstream: UpstreamClient,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the ClientHello, never answers it
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="ConnectTimeout"):
        await upstream.open(f"https://127.0.0.1:{port}/x", SOME_REQUEST, SOME_HEADERS)
    elapsed = time.monotonic() - started
    server.close()
    assert LIMITS.connect_timeout_seconds <= elapsed < LIMITS.connect_timeout_seconds + 1


class ClosingBron:
    """A bron in a thread of its own (blocking sockets) that answers one request on each
    connection as if to keep it alive (no ``Connection: close``), then closes it at once, as
    a LAS's idle timeout would a moment later. Being in its own thread, it closes while the
    relay's event loop is busy elsewhere: the relay has not seen the close yet when it next
    picks a kept-alive connection."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(
        self, context: ssl.SSLContext, *, crossing: bool = False, answer: bytes = ANSWER
    ) -> None:
        self._context = context
        self._answer = answer
        # crossing: the close comes as the next request arrives on the connection (it is read,
        # never answered), so no look at the connection before it is used can see it coming.
        self._crossing = crossing
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}/dossier"
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released once per connection it closed
        self._serving: ssl.SSLSocket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # close() alone would not wake the thread out of accept(); shutdown() does (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        serving = self._serving
        if serving is not None:  # waiting for a request on a connection still kept alive
            with contextlib.suppress(OSError):
                socket.socket.shutdown(serving, socket.SHUT_RDWR)  # the socket's, not TLS's
        self._thread.join(5)
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return  # stopped
            self.connections += 1
            with (
                contextlib.suppress(OSError),
                self._context.wrap_socket(raw, server_side=True) as tls,
            ):
                self._serving = tls
                _read_request(tls)
                tls.sendall(self._answer)
                if self._crossing:
                    _read_request(tls)
            self._serving = None
            self.closed.release()  # closed without close_notify, as an idle close often is


def _read_request(tls: ssl.SSLSocket) -> None:
    received = b""
    while b"\r\n\r\n" not in received:
        received += tls.recv(65536) or _closed()
    head, _, body = received.partition(b"\r\n\r\n")
    declared = re.search(rb"(?im)^content-length: *(\d+)", head)
    while declared is not None and len(body) < int(declared[1]):
        body += tls.recv(65536) or _closed()


def _closed() -> bytes:
    raise ConnectionResetError("the client closed the connection")


def relay_three_times(
    tc: TrafficCenterUnderTest, bron: ClosingBron, loop: str, *, hold_the_loop: bool
) -> list[str]:
    """Three requests to ``bron`` through the relay's client on a loop of its own; with
    ``hold_the_loop`` the loop is held (blocking, on purpose) after each while the bron closes,
    so the close waits unread in the socket when the next request picks its connection. How
    each closed kept-alive connection was found, as the client told its metric."""
    found: list[str] = []

    async def relays() -> None:
        upstream = UpstreamClient(LIMITS, ssl_context=relay_context(tc), on_stale=found.append)
        try:
            for _ in range(3):
                response = await upstream.open(bron.url, SOME_REQUEST, SOME_HEADERS)
                assert await read_all(upstream, response) == b"{}"
                if hold_the_loop:
                    assert bron.closed.acquire(timeout=5)
                    time.sleep(0.05)  # noqa: ASYNC251 - holding the loop is the point
        finally:
            await upstream.aclose()

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(relays())
    finally:
        bron.stop()
    return found


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_kept_alive_connection_the_bron_closed_is_not_reused_though_unseen(
    tc: TrafficCenterUnderTest, hostile: HostileBron, loop: str
) -> None:
    """A LAS closes a kept-alive connection just as the relay, its event loop busy, picks it
    for the next request: the close is in the socket, not yet seen by the loop. The request
    must go out on a new connection, not end as a 502 (a busy node lost relays this way), and
    without being sent on the dead one first. On both loops: the node's is uvloop."""
    bron = ClosingBron(hostile.context)
    found = relay_three_times(tc, bron, loop, hold_the_loop=True)
    assert bron.connections == 3
    # Seen before use each time, not found out by a request sent on it.
    assert found == ["before_use", "before_use"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_request_that_crosses_the_bron_s_close_goes_once_more_on_a_new_connection(
    tc: TrafficCenterUnderTest, hostile: HostileBron, loop: str
) -> None:
    """The LAS closes a kept-alive connection as the next request arrives on it: read, never
    answered. That request goes once more, on a new connection, and is answered there."""
    bron = ClosingBron(hostile.context, crossing=True)
    found = relay_three_times(tc, bron, loop, hold_the_loop=False)
    # Each relay after the first: its kept-alive connection closed under it, a new one.
    assert bron.connections == 3
    assert found == ["under_request", "under_request"]


async def test_the_node_counts_the_requests_it_sent_once_more(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron
) -> None:
    """Through the node: the relay after the first finds its kept-alive connection closed
    under its request, sends it once more, delivers the dossier, and the operators' metric
    says so."""
    dossier = dossier_bytes(64 * 1024)
    server = await asyncio.to_thread(
        ClosingBron, hostile.context, crossing=True, answer=head(length=len(dossier)) + dossier
    )
    try:
        bron = await tc.world.school("PO", register_endpoint=False)
        await las.register(bron, server.url.removesuffix("/dossier") + "/oso")
        before = stale_connections(tc, "under_request")
        for _ in range(2):
            key = scenario_key("onbekend")
            sessie_id = await open_session(doel.party, bron, key)
            fetched = await fetch(doel.party, sessie_id, bron.routeringskenmerk, key)
            assert (fetched.status, fetched.complete, fetched.size) == (200, True, len(dossier))
        assert stale_connections(tc, "under_request") == before + 1
        assert server.connections == 2
    finally:
        await asyncio.to_thread(server.stop)


def stale_connections(tc: TrafficCenterUnderTest, found: str) -> float:
    return sample(tc, "traffic_center_upstream_stale_connections_total", found=found)


async def test_a_bron_that_never_answers_gets_a_request_once_more_at_most(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    """Closed under a request on a kept-alive connection: sent once more on a new one, and
    that one's close is the answer (502). On a new connection, at once the answer."""
    response = await upstream.open(hostile.url("echo"), SOME_REQUEST, SOME_HEADERS)
    await read_all(upstream, response)  # a kept-alive connection to this bron
    requests, connections = len(hostile.requests), hostile.connections
    with pytest.raises(UpstreamUnreachable, match="RemoteProtocolError"):
        await upstream.open(hostile.url("closed"), SOME_REQUEST, SOME_HEADERS)
    assert (len(hostile.requests), hostile.connections) == (requests + 2, connections + 1)
    with pytest.raises(UpstreamUnreachable, match="RemoteProtocolError"):
        await upstream.open(hostile.url("closed"), SOME_REQUEST, SOME_HEADERS)
    assert (len(hostile.requests), hostile.connections) == (requests + 3, connections + 2)


# --- a bron that speaks out of turn ----------------------------------------------------------

SCHOOL_A = b"<dossier>a pupil of school A</dossier>"
SCHOOL_B = b"<dossier>a pupil of school B</dossier>"
UNASKED = b"<dossier>nobody asked for this one</dossier>"


def answering_then(pushed: bytes) -> Scenario:
    """School A's answer; then, once the relay has read it to the end and pooled the
    connection, ``pushed`` on that idle connection (a second answer, or the start of one)."""

    async def scenario(exchange: Exchange) -> bool:
        await exchange.send(head(length=len(SCHOOL_A)) + SCHOOL_A)
        await asyncio.sleep(0.3)
        await exchange.send(pushed)
        return True

    return scenario


async def school_b(exchange: Exchange) -> bool:
    await exchange.send(head(length=len(SCHOOL_B)) + SCHOOL_B)
    return True


OUT_OF_TURN = {
    "a whole answer": head(length=len(UNASKED)) + UNASKED,
    # A head cut short. aiohttp gives each request a parser of its own, so these bytes could
    # not become the next answer's start; read while idle, they still mean the connection
    # is not used again (and are counted: a LAS bug).
    "the start of one": b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nX-Pad",
}


@pytest.mark.parametrize("pushed", OUT_OF_TURN, ids=list(OUT_OF_TURN))
async def test_what_a_bron_sends_on_an_idle_connection_is_never_the_next_answer(
    tc: TrafficCenterUnderTest, hostile: HostileBron, pushed: str
) -> None:
    """One LAS host serves many schools and the pool is per host: bytes it sent between two
    requests, if read as the next answer, would hand school A's bytes to a relay for school
    B (and B's request would never be delivered). The connection is dropped instead."""
    found: list[str] = []
    client = UpstreamClient(LIMITS, ssl_context=relay_context(tc), on_stale=found.append)
    hostile.scenarios.update(push=answering_then(OUT_OF_TURN[pushed]), b=school_b)
    try:
        response = await client.open(hostile.url("push"), SOME_REQUEST, SOME_HEADERS)
        assert await read_all(client, response) == SCHOOL_A
        await asyncio.sleep(0.6)  # the push has come, and been read by the loop
        requests, connections = len(hostile.requests), hostile.connections
        response = await client.open(hostile.url("b"), SOME_REQUEST, SOME_HEADERS)
        assert await read_all(client, response) == SCHOOL_B
        assert hostile.requests[-1].path == "/b"  # school B's request was delivered
        assert (len(hostile.requests), hostile.connections) == (requests + 1, connections + 1)
        assert found == ["out_of_turn"]
    finally:
        await client.aclose()


async def test_a_relay_after_a_bron_spoke_out_of_turn_gets_its_own_school_s_dossier(
    tc: TrafficCenterUnderTest, las: LasWorld, doel: LasParty, hostile: HostileBron
) -> None:
    """Through the node: the doel that asks school B gets B's dossier, recorded with B's
    SHA-256, and the operators' metric counts the dropped connection."""
    hostile.scenarios.update(push=answering_then(OUT_OF_TURN["a whole answer"]), b=school_b)
    before = stale_connections(tc, "out_of_turn")
    _, first = await relayed(tc, las, doel, hostile, "push")
    assert first.sha256 == hashlib.sha256(SCHOOL_A).hexdigest()
    await asyncio.sleep(0.6)
    sessie_id, second = await relayed(tc, las, doel, hostile, "b")
    assert (second.status, second.complete, second.sha256) == (
        200,
        True,
        hashlib.sha256(SCHOOL_B).hexdigest(),
    )
    [record] = await eventually_recorded(tc, sessie_id)
    assert (record.result, record.sha256) == ("OverdrachtGeslaagd", second.sha256)
    assert stale_connections(tc, "out_of_turn") == before + 1


async def begun_then_closed(exchange: Exchange) -> bool:
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n")
    return False


async def test_a_request_whose_answer_had_begun_is_not_sent_again(
    hostile: HostileBron, upstream: UpstreamClient
) -> None:
    """The one resend is for a request a kept-alive connection's close crossed before any
    answer: a bron that began answering and then closed had the request, and may have
    acted on it."""
    hostile.scenarios["begun"] = begun_then_closed
    response = await upstream.open(hostile.url("echo"), SOME_REQUEST, SOME_HEADERS)
    await read_all(upstream, response)  # a kept-alive connection to this bron
    requests = len(hostile.requests)
    with pytest.raises(UpstreamUnreachable, match="RemoteProtocolError"):
        await upstream.open(hostile.url("begun"), SOME_REQUEST, SOME_HEADERS)
    assert len(hostile.requests) == requests + 1


def test_a_kept_alive_connection_is_looked_at_whatever_its_descriptor_number() -> None:
    """The look before reuse works past select()'s 1,024 descriptors, where a busy node's
    connections are: nothing waiting is no reason to drop one, its peer's close is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = 1500
    if soft <= high:
        assert hard == resource.RLIM_INFINITY or hard > high, "the test needs 1,500 descriptors"
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 100, hard))
    ours, theirs = socket.socketpair()
    try:
        os.dup2(ours.fileno(), high)
        kept = socket.socket(fileno=high)

        class Transport:
            def get_extra_info(self, name: str) -> object:
                return kept if name == "socket" else None

        try:
            assert not _peer_has_spoken(cast(asyncio.BaseTransport, Transport()))
            theirs.close()  # the LAS closes the idle connection
            assert _peer_has_spoken(cast(asyncio.BaseTransport, Transport()))
        finally:
            kept.close()
    finally:
        ours.close()
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
