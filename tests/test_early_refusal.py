"""Issue 10, rows 3 and 4: revoked and unknown certificates cost a node nothing lasting.

A real `traffic-center serve` process on loopback, attacked over real TLS: big bodies behind an
unregistered or a revoked certificate are answered 403 before a body byte is read and the
upload is cut; oversized bodies of a valid caller are 413; idle and slow connections with a
revoked certificate are closed and their memory is bounded and given back.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.node import Node, start_node
from traffic_center.demo.memory import RssSampler

MB = 1024 * 1024
KEEP_ALIVE_SECONDS = 3.0
HEADER_SECONDS = 2.0
SLACK_SECONDS = 1.5
BODY_CAP = 16 * 1024
# Stated bounds (issue 10 measured RSS 108 → 416 MB for one 100 MB body, 2.36 GB for 4 × 200).
BODY_FLOOD_RSS_BOUND = 30 * MB
IDLE_FLOOD_RSS_BOUND = 60 * MB  # 500 TLS connections, 120 kB each at most (was 300 kB)
RETURNED_RSS_BOUND = 30 * MB  # above the idle node's, once the 500 are closed
ANSWERED_WITHIN = 3.0


@dataclass
class Attackers:
    node: Node
    unknown_serial: str
    revoked_serial: str


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attackers]:
    node = start_node(
        tmp_path_factory.mktemp("refusal"),
        {
            "TC_KEEP_ALIVE_TIMEOUT_SECONDS": str(KEEP_ALIVE_SECONDS),
            "TC_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS),
            "TC_TLS_HANDSHAKE_TIMEOUT_SECONDS": "2",
            "TC_MAX_REQUEST_BODY_BYTES": str(BODY_CAP),
        },
    )
    try:
        unknown = node.issue("unknown", register=False)
        revoked = node.issue("revoked", register=True)
        node.cli("ca", "revoke", revoked)
        yield Attackers(node, unknown, revoked)
    finally:
        node.stop()


@dataclass
class Upload:
    status_line: bytes
    answered_after: float
    sent: int


def upload(node: Node, who: str, size: int, *, path: str = "/v1/sessions") -> Upload:
    """POST ``size`` bytes as ``who``: headers, read the answer, then try to send the body."""
    with node.tls(who) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        sock.settimeout(ANSWERED_WITHIN + 2)
        answer = sock.recv(65536)
        answered_after = time.monotonic() - started
        sent = _send_until_refused(sock, size)
    return Upload(answer.split(b"\r\n", 1)[0], answered_after, sent)


def _send_until_refused(sock: ssl.SSLSocket, size: int) -> int:
    """Bytes of the body the node took before it cut the connection (all of it: not cut)."""
    chunk, sent = b"x" * (256 * 1024), 0
    sock.settimeout(2)
    try:
        while sent < size:
            sent += sock.send(chunk[: size - sent])
    except (OSError, ssl.SSLError):
        return sent
    return sent


def test_a_100_mb_body_behind_an_unregistered_certificate_is_refused_unread(
    attacked: Attackers,
) -> None:
    node = attacked.node
    sampler = RssSampler(node.process.pid)
    idle = sampler.rss()
    with sampler:
        result = upload(node, "unknown", 100 * MB)
    assert result.status_line.startswith(b"HTTP/1.1 403 "), result.status_line
    assert result.answered_after < ANSWERED_WITHIN
    assert result.sent < 100 * MB, "the attacker finished its upload"
    print(f"unknown: RSS idle {idle / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB")
    assert sampler.peak - idle < BODY_FLOOD_RSS_BOUND
    refused = node.ops("/metrics").text
    assert 'traffic_center_refused_callers_total{reason="CertificaatOnbekend"}' in refused


def test_four_200_mb_bodies_behind_a_revoked_certificate_are_refused_unread(
    attacked: Attackers,
) -> None:
    node = attacked.node
    sampler = RssSampler(node.process.pid)
    idle = sampler.rss()
    results: list[Upload] = []

    def attack() -> None:
        results.append(upload(node, "revoked", 200 * MB))

    threads = [threading.Thread(target=attack) for _ in range(4)]
    with sampler:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(results) == 4
    for result in results:
        assert result.status_line.startswith(b"HTTP/1.1 403 "), result.status_line
        assert result.answered_after < ANSWERED_WITHIN
        assert result.sent < 200 * MB, "the attacker finished its upload"
    print(f"revoked: RSS idle {idle / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB")
    assert sampler.peak - idle < BODY_FLOOD_RSS_BOUND
    metrics = node.ops("/metrics").text
    assert 'traffic_center_refused_callers_total{reason="CertificaatIngetrokken"}' in metrics


def test_a_valid_caller_s_oversized_body_is_413_before_it_is_read(attacked: Attackers) -> None:
    result = upload(attacked.node, "school-a", 50 * MB)
    assert result.status_line.startswith(b"HTTP/1.1 413 "), result.status_line
    assert result.answered_after < ANSWERED_WITHIN
    assert result.sent < 50 * MB


def test_a_chunked_body_is_cut_at_the_cap(attacked: Attackers) -> None:
    with attacked.node.tls() as sock:
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 4096
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sock.sendall(framed * (BODY_CAP // len(chunk) + 2))
        answer = _read_answer(sock)
        sent = _send_until_refused(sock, 50 * MB)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert b"VerzoekTeGroot" in answer
    assert sent < 50 * MB


def _read_answer(sock: ssl.SSLSocket) -> bytes:
    """The whole (small) answer: until the connection closes, at most 64 KiB."""
    sock.settimeout(ANSWERED_WITHIN)
    answer = b""
    try:
        while len(answer) < 65536 and (data := sock.recv(65536)):
            answer += data
    except (OSError, ssl.SSLError):
        pass
    return answer


def test_small_bodies_and_the_valid_caller_still_work(attacked: Attackers) -> None:
    with attacked.node.client() as client:
        assert client.get("/v1/whoami").status_code == 200
        answer = client.post("/v1/sessions", json={"bron_brin": "99ZZ"})
    assert answer.status_code == 422  # parsed and judged: not refused for its size


def _open_idle(node: Node, who: str, count: int) -> list[ssl.SSLSocket]:
    return [node.tls(who) for _ in range(count)]


def test_500_idle_connections_with_a_revoked_certificate_are_bounded_and_returned(
    attacked: Attackers,
) -> None:
    node = attacked.node
    sampler = RssSampler(node.process.pid)
    idle = sampler.rss()
    with sampler:
        held = _open_idle(node, "revoked", 500)
        opened_by = time.monotonic()
        time.sleep(0.5)
    try:
        closed = sum(1 for sock in held if _closed_within(sock, KEEP_ALIVE_SECONDS + SLACK_SECONDS))
        closing_took = time.monotonic() - opened_by
    finally:
        for sock in held:
            sock.close()
    time.sleep(1)
    after = sampler.rss()
    print(
        f"idle flood: RSS idle {idle / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB, "
        f"after {after / MB:.0f} MB; closed {closed} in {closing_took:.1f} s"
    )
    assert closed == 500, "idle connections with a revoked certificate were kept"
    assert sampler.peak - idle < IDLE_FLOOD_RSS_BOUND
    assert after - idle < RETURNED_RSS_BOUND


def _closed_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            if sock.recv(1024) == b"":
                return True
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


def test_revoked_headers_one_line_every_few_seconds_are_cut_off(attacked: Attackers) -> None:
    started = time.monotonic()
    cut_off = None
    with attacked.node.tls("revoked") as sock:
        sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for line in range(10):  # a header line a second, never the blank line
            if _closed_within(sock, 1.0):
                cut_off = time.monotonic() - started
                break
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % line)
            except (OSError, ssl.SSLError):
                cut_off = time.monotonic() - started
                break
    assert cut_off is not None, "headers trickled for 10 s without being cut off"
    assert cut_off <= HEADER_SECONDS + SLACK_SECONDS


def test_the_node_log_has_no_traceback(attacked: Attackers) -> None:
    assert "Traceback" not in attacked.node.log.read_text()
