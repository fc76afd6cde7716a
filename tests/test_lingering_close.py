"""An answer given before its request was read to the end reaches a client still sending.

A 413 for an oversized body (declared, or chunked and cut at the cap) closes the connection;
closed at once with the client's bytes unread, the kernel sends a reset and a client still
sending loses the answer (httpx: ReadError). The node lingers instead (server/limits.py,
``LingeringClose``), within bounds: real TLS, real servers, on both HTTP/1.1 protocols and
both loops.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.world import Party, client_context
from traffic_center.server.limits import ConnectionLimits, LingeringClose

REPEATS = 20  # the reset came about one time in five: twenty make it show
OVERSIZED_BYTES = 256 * 1024  # past the 16 KiB cap, within the linger's byte bound
LIMITS = ConnectionLimits()
SLACK_SECONDS = 1.5


@dataclass
class Node:
    tc: TrafficCenterUnderTest
    party: Party


@pytest.fixture(
    scope="module",
    params=[(False, False), (True, False), (True, True)],
    ids=["h11-asyncio", "httptools-asyncio", "httptools-uvloop"],
)
async def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node]:
    httptools, uvloop = request.param
    tmp = tmp_path_factory.mktemp("linger")
    tc = await start_traffic_center(
        tmp / "home", f"sqlite+aiosqlite:///{tmp / 'tc.db'}", httptools=httptools, uvloop=uvloop
    )
    try:
        yield Node(tc, await tc.world.school("PO"))
    finally:
        await tc.stop()


async def kilobytes(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b" " * 1024


def assert_too_large(answer: httpx.Response) -> None:
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "VerzoekTeGroot"


async def test_an_oversized_chunked_body_still_being_sent_gets_the_whole_413(node: Node) -> None:
    for _ in range(REPEATS):
        async with node.party.new_client() as client:
            answer = await client.post(
                "/v1/sessions",
                headers={"Content-Type": "application/json"},
                content=kilobytes(OVERSIZED_BYTES // 1024),
            )
        assert_too_large(answer)


async def test_an_oversized_declared_body_still_being_sent_gets_the_whole_413(node: Node) -> None:
    for _ in range(REPEATS):
        async with node.party.new_client() as client:
            answer = await client.post(
                "/v1/sessions",
                headers={
                    "Content-Type": "application/json",
                    "Content-Length": f"{OVERSIZED_BYTES}",
                },
                content=kilobytes(OVERSIZED_BYTES // 1024),
            )
        assert answer.request.headers.get("transfer-encoding") is None  # declared, not chunked
        assert_too_large(answer)


def open_upload(node: Node) -> ssl.SSLSocket:
    """A TLS connection that declared a 1 GiB body and has read the 413 the node answered."""
    context = client_context(node.tc.ca_pem, node.party.cert, node.party.key)
    raw = socket.create_connection(("127.0.0.1", node.tc.server.vendor.bound_port), timeout=5)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(
        b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    answer = b""
    while b"VerzoekTeGroot" not in answer:
        data = sock.recv(65536)
        assert data, answer
        answer += data
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    return sock


def trickle_until_cut_off(sock: ssl.SSLSocket) -> float:
    """Seconds the node took a kilobyte every 0.1 s (never silent for long) before it cut."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            sock.sendall(b" " * 1024)
            time.sleep(0.1)
    except OSError:  # ssl.SSLError too: the reset
        return time.monotonic() - started
    raise AssertionError("a client sending forever was never cut off")


def flood(sock: ssl.SSLSocket) -> int:
    """Bytes sent as fast as the node takes them, up to 1 GiB, until the connection is cut."""
    chunk, sent = b" " * (64 * 1024), 0
    sock.settimeout(LIMITS.linger_seconds + SLACK_SECONDS)
    try:
        while sent < 1024**3:
            sent += sock.send(chunk)
    except OSError:
        return sent
    return sent


def lingering_connections(node: Node) -> int:
    """The vendor listener's connections (the set its caps count) now lingering."""
    connections = list(node.tc.server.vendor.server_state.connections)
    return sum(
        isinstance(connection.transport.get_protocol(), LingeringClose)
        for connection in connections
    )


async def test_a_client_that_keeps_sending_is_cut_off_within_the_bound(node: Node) -> None:
    sock = await asyncio.to_thread(open_upload, node)
    try:
        cut = asyncio.create_task(asyncio.to_thread(trickle_until_cut_off, sock))
        await asyncio.sleep(0.5)
        assert lingering_connections(node) == 1, "a lingering connection is a connection"
        took = await cut
    finally:
        sock.close()
    assert LIMITS.linger_seconds - 0.5 < took < LIMITS.linger_seconds + SLACK_SECONDS, took


async def test_a_client_that_sends_a_lot_fast_is_cut_off_at_the_byte_bound(node: Node) -> None:
    sock = await asyncio.to_thread(open_upload, node)
    try:
        started = time.monotonic()
        sent = await asyncio.to_thread(flood, sock)
        took = time.monotonic() - started
    finally:
        sock.close()
    # The node read at most its byte bound; the rest is what the kernels' buffers held.
    assert sent < LIMITS.linger_bytes + 32 * 1024**2, sent
    assert took < LIMITS.linger_seconds + SLACK_SECONDS, took


async def test_a_client_that_falls_silent_is_closed_after_the_silence(node: Node) -> None:
    sock = await asyncio.to_thread(open_upload, node)

    def closed_after() -> float:
        started = time.monotonic()
        sock.settimeout(LIMITS.linger_seconds + SLACK_SECONDS)
        assert sock.recv(65536) == b""  # the node's close_notify
        return time.monotonic() - started

    try:
        took = await asyncio.to_thread(closed_after)
    finally:
        sock.close()  # its close_notify: the node's TLS shutdown completes
    assert took < LIMITS.linger_silence_seconds + 0.5, took
    deadline = time.monotonic() + SLACK_SECONDS
    while lingering_connections(node):
        assert time.monotonic() < deadline, "the closed connection was kept"
        await asyncio.sleep(0.05)


async def test_what_a_client_sends_after_the_close_is_not_read(node: Node) -> None:
    """Once the node has closed (its close_notify out), the next bytes the client sends get
    the connection aborted: the lingering close's byte bound is the last word. (uvloop's own
    TLS would read and drop them until the shutdown timeout: server/uvloop_loop.py.)"""
    sock = await asyncio.to_thread(open_upload, node)

    def send_after_the_close() -> int:
        sock.settimeout(LIMITS.linger_seconds + SLACK_SECONDS)
        assert sock.recv(65536) == b""  # the node's close_notify, after the silence
        return flood(sock)

    try:
        sent = await asyncio.to_thread(send_after_the_close)
    finally:
        sock.close()
    assert sent < 32 * 1024**2, sent  # what the kernels' buffers held
