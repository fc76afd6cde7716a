"""Who may connect: real TLS against a real server, for every way a certificate can be wrong."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import DatabaseFactory
from tests.support.processes import clean_env
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.sockets import server_end_option
from tests.support.world import (
    client_context,
    unique_brin,
    unique_routeringskenmerk,
    unregistered_certificate,
)
from traffic_center.domain.models import CertificateRecord
from traffic_center.pki.ca import CertificateAuthority, write_issued
from traffic_center.server.limits import BoundedHandshakeLoop, HandshakeBounds
from traffic_center.server.runner import TrafficCenterServer, vendor_config
from traffic_center.server.uvloop_loop import BoundedHandshakeUVLoop
from traffic_center.settings import Settings


def _client(tc: TrafficCenterUnderTest, context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=tc.url, verify=context, timeout=10)


def _context(tc: TrafficCenterUnderTest, prefix: Path) -> ssl.SSLContext:
    """Presenting PREFIX.pem with PREFIX.key, trusting the TC's CA."""
    return client_context(tc.ca_pem, prefix.with_suffix(".pem"), prefix.with_suffix(".key"))


async def _assert_refused_in_handshake(tc: TrafficCenterUnderTest, context: ssl.SSLContext) -> None:
    async with _client(tc, context) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/v1/whoami")


def _uninventoried(tc: TrafficCenterUnderTest, prefix: Path) -> ssl.SSLContext:
    """Signed by the TC's CA but never recorded, e.g. issued from a lost backup."""
    issued = tc.ca.issue_client_certificate(
        routeringskenmerk=unique_routeringskenmerk(), brin=unique_brin(), name="Ghost"
    )
    write_issued(issued, prefix)
    return _context(tc, prefix)


async def test_valid_certificate_gets_its_own_identity(tc: TrafficCenterUnderTest) -> None:
    party = await tc.world.school("PO")
    response = await party.client().get("/v1/whoami")
    assert response.status_code == 200
    body = response.json()
    assert body["routeringskenmerk"] == party.routeringskenmerk
    assert body["serial"] == party.serial
    assert body["brin"] == party.brin
    assert body["name"] == f"School {party.brin}"
    assert body["endpoint_registered"] is True


async def test_no_client_certificate_is_refused(tc: TrafficCenterUnderTest) -> None:
    await _assert_refused_in_handshake(tc, client_context(tc.ca_pem, None, None))


async def test_certificate_from_another_ca_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    stranger = CertificateAuthority.create(tmp_path / "other-ca", name="Not the TC")
    issued = stranger.issue_client_certificate(
        routeringskenmerk=unique_routeringskenmerk(), brin=unique_brin(), name="Impostor"
    )
    write_issued(issued, tmp_path / "impostor")
    await _assert_refused_in_handshake(tc, _context(tc, tmp_path / "impostor"))


async def test_expired_certificate_is_refused(tc: TrafficCenterUnderTest, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    await unregistered_certificate(
        tc.certificates,
        name="Expired",
        out=tmp_path / "expired",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    await _assert_refused_in_handshake(tc, _context(tc, tmp_path / "expired"))


async def test_server_only_certificate_is_refused_as_client(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    await tc.certificates.issue_server(hosts=["las.test"], out=tmp_path / "server-only")
    context = _context(tc, tmp_path / "server-only")
    async with _client(tc, context) as client:
        try:
            response = await client.get("/v1/whoami")
        except httpx.TransportError:
            return  # refused in the handshake: OpenSSL's ssl_client purpose check
        assert response.status_code == 403
        assert response.json()["code"] == "CertificaatOngeldig"


async def test_certificate_unknown_to_the_inventory_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    async with _client(tc, _uninventoried(tc, tmp_path / "ghost")) as client:
        response = await client.get("/v1/whoami")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "CertificaatOnbekend"


async def test_revocation_reaches_an_open_keep_alive_connection_within_5_seconds(
    tc: TrafficCenterUnderTest,
) -> None:
    party = await tc.world.school("VO")
    client = party.client()
    assert (await client.get("/v1/whoami")).status_code == 200
    await tc.certificates.revoke(party.serial, reason="keyCompromise")
    revoked_at = time.monotonic()
    while True:
        response = await client.get("/v1/whoami")
        if response.status_code != 200 or time.monotonic() - revoked_at > 6:
            break
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - revoked_at
    assert response.status_code == 403
    assert response.json()["code"] == "CertificaatIngetrokken"
    assert elapsed <= 5.0


async def test_tls_1_1_is_refused_and_1_2_and_1_3_work(tc: TrafficCenterUnderTest) -> None:
    party = await tc.world.school("PO")
    old = client_context(tc.ca_pem, party.cert, party.key)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    await _assert_refused_in_handshake(tc, old)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = client_context(tc.ca_pem, party.cert, party.key)
        context.minimum_version = context.maximum_version = version
        async with _client(tc, context) as client:
            assert (await client.get("/v1/whoami")).status_code == 200


async def test_tls_1_2_without_forward_secrecy_is_refused(tc: TrafficCenterUnderTest) -> None:
    party = await tc.world.school("PO")
    context = client_context(tc.ca_pem, party.cert, party.key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA")  # no ECDHE+AEAD
    await _assert_refused_in_handshake(tc, context)


async def test_refusals_are_counted_by_reason_on_the_ops_listener(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    async with _client(tc, _uninventoried(tc, tmp_path / "ghost")) as client:
        assert (await client.get("/v1/whoami")).status_code == 403
    # A served request, so the route label below is this test's own (not one an earlier
    # test in the module left).
    party = await tc.world.school("PO")
    assert (await party.client().get("/v1/whoami")).status_code == 200
    async with httpx.AsyncClient(base_url=tc.ops_url) as ops:
        # A request is counted once its answer is out: the client may read the answer first.
        deadline = time.monotonic() + 5
        while 'route="/v1/whoami"' not in (metrics := (await ops.get("/metrics")).text):
            assert time.monotonic() < deadline, "the served request was never counted"
            await asyncio.sleep(0.05)
        ready = await ops.get("/readyz")
        alive = await ops.get("/healthz")
    assert 'traffic_center_refused_callers_total{reason="CertificaatOnbekend"}' in metrics
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "store": True,
        "audit_writable": True,
        "ca": True,
        "not_draining": True,
    }
    assert alive.status_code == 200


# --- the vendor listener's other protocol and loop -------------------------------------------

REFUSED = "traffic_center_tls_handshakes_refused_total"


@pytest.mark.parametrize(
    ("httptools", "uvloop"),
    [(False, False), (True, False)],
    ids=["h11-asyncio", "httptools-asyncio"],
)
async def test_the_other_protocol_and_loop_keep_identity_limits_and_refusals(
    tmp_path: Path, httptools: bool, uvloop: bool
) -> None:
    """The default is httptools on uvloop's loop (tests everywhere else); h11 is the fallback
    and asyncio's the alternative loop: the same mixins and TLS protocol, so the same TLS
    scope, header deadline, refused-handshake count and TCP_NODELAY."""
    tc = await start_traffic_center(
        tmp_path / "home",
        f"sqlite+aiosqlite:///{tmp_path / 'tc.db'}",
        httptools=httptools,
        uvloop=uvloop,
        header_timeout_seconds=1.0,
    )
    try:
        party = await tc.world.school("PO")
        whoami = await party.client().get("/v1/whoami")
        assert whoami.status_code == 200
        assert whoami.json()["serial"] == party.serial  # the certificate reached the scope

        before = tc.metrics_registry.get_sample_value(REFUSED, {"reason": "no_certificate"}) or 0
        await _assert_refused_in_handshake(tc, client_context(tc.ca_pem, None, None))
        deadline = time.monotonic() + 5
        while (
            tc.metrics_registry.get_sample_value(REFUSED, {"reason": "no_certificate"}) or 0
        ) == before:
            assert time.monotonic() < deadline, "the refused handshake was not counted"
            await asyncio.sleep(0.05)

        context = client_context(tc.ca_pem, party.cert, party.key)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", tc.server.vendor.bound_port, ssl=context
        )
        try:
            client_end = writer.get_extra_info("socket")
            assert server_end_option(
                client_end, os.getpid(), socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            writer.write(b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the end
            started = time.monotonic()
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), timeout=5) == b""
            assert time.monotonic() - started < 2.5, "headers never ended, yet not cut off"
        finally:
            writer.close()
    finally:
        await tc.stop()


@pytest.mark.parametrize("setting", ["asyncio", "uvloop"])
def test_the_event_loop_setting_picks_the_loop_of_serve_and_of_each_worker(
    tmp_path: Path, setting: Literal["asyncio", "uvloop"]
) -> None:
    """TC_EVENT_LOOP: single-process serve runs TrafficCenterServer's loop factory, and every
    --workers worker the one uvicorn takes from the listener's config; both follow it, and
    either loop bounds the handshake."""
    settings = Settings(home=tmp_path, event_loop=setting)
    server = TrafficCenterServer(settings, serve_vendor_api=False)
    worker_config = vendor_config(settings, "traffic_center.server.workers:app_from_env")
    expected = BoundedHandshakeUVLoop if setting == "uvloop" else BoundedHandshakeLoop
    for factory in (server.loop_factory, worker_config.get_loop_factory()):
        assert factory is not None
        loop = factory()
        try:
            assert type(loop) is expected
            assert isinstance(loop, HandshakeBounds)
        finally:
            loop.close()


def test_without_uvloop_the_default_loop_is_asyncios_and_asking_for_uvloop_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where uvloop is not installed (Windows, where it does not run), a node starts on
    asyncio's loop instead of failing with an ImportError; TC_EVENT_LOOP=uvloop there is a
    settings error naming the setting and the way out."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import fails
    settings = Settings(home=tmp_path)
    assert settings.event_loop == "asyncio"
    loop = TrafficCenterServer(settings, serve_vendor_api=False).loop_factory()
    try:
        assert type(loop) is BoundedHandshakeLoop
    finally:
        loop.close()
    with pytest.raises(ValidationError, match=r"uvloop is not installed.*TC_EVENT_LOOP=asyncio"):
        Settings(home=tmp_path, event_loop="uvloop")
    # The command line: exit 2 with the one line, before anything is served.
    hide_uvloop = (
        "import sys; sys.modules['uvloop'] = None; "
        "from traffic_center.cli.main import main; "
        f"sys.exit(main(['--home', {str(tmp_path / 'tc')!r}, 'serve', '--dev']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_uvloop],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "TC_EVENT_LOOP": "uvloop"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TC_EVENT_LOOP" in result.stderr
    assert "not installed" in result.stderr


async def test_the_inventory_is_read_once_per_request_and_a_revocation_counts_at_once(
    tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    """The request guard hands the identity it screened to the route of the same request:
    one read of the certificate inventory per request (it was two), and with no revocation
    cache the very next request after a revocation is refused."""
    tc = await start_traffic_center(
        tmp_path, await database_factory("sqlite"), revocation_cache_seconds=0
    )
    try:
        party = await tc.world.school("VO")
        certificates = tc.server.vendor.config.app.state.services.store.certificates
        reads: list[str] = []
        read = certificates.get

        async def counted(serial: str) -> CertificateRecord | None:
            reads.append(serial)
            return await read(serial)

        certificates.get = counted
        client = party.client()
        answers = [
            (await client.get("/v1/whoami")).status_code,
            (await client.get("/v1/endpoints")).status_code,
        ]
        read_per_request = list(reads)
        await tc.certificates.revoke(party.serial, reason="keyCompromise")
        after_revocation = await client.get("/v1/whoami")
    finally:
        await tc.stop()
    assert answers == [200, 200]
    assert read_per_request == [party.serial, party.serial]
    assert after_revocation.status_code == 403
    assert after_revocation.json()["code"] == "CertificaatIngetrokken"


async def test_one_session_ticket_and_a_resumed_connection_is_checked_like_a_new_one(
    tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    """One TLS 1.3 session ticket per handshake, not OpenSSL's two (each one is made before
    the first request is read: issue 14). A client resuming with it is still identified by
    its certificate, and refused once that is revoked: resuming skips no check of ours."""
    tc = await start_traffic_center(
        tmp_path, await database_factory("sqlite"), revocation_cache_seconds=0
    )
    try:
        party = await tc.world.school("VO")
        context = client_context(tc.ca_pem, party.cert, party.key)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        tickets = _count_session_tickets(context)
        first = await asyncio.to_thread(_whoami_on_a_new_connection, tc, context, None)
        tickets_first = len(tickets)
        resumed = await asyncio.to_thread(_whoami_on_a_new_connection, tc, context, first.session)
        await tc.certificates.revoke(party.serial, reason="keyCompromise")
        revoked = await asyncio.to_thread(_whoami_on_a_new_connection, tc, context, resumed.session)
    finally:
        await tc.stop()
    assert tickets_first == 1
    assert (first.status, first.reused) == (200, False)
    assert (resumed.status, resumed.reused) == (200, True)
    assert party.serial.encode() in resumed.body
    assert (revoked.status, revoked.reused) == (403, True)
    assert b"CertificaatIngetrokken" in revoked.body


@dataclass
class _Answered:
    status: int
    body: bytes
    reused: bool
    session: ssl.SSLSession | None


def _count_session_tickets(context: ssl.SSLContext) -> list[object]:
    """The NewSessionTicket messages the client receives (CPython's TLS message hook)."""
    received: list[object] = []

    def hook(
        _conn: object, direction: str, _v: object, _ct: object, kind: object, _d: object
    ) -> None:
        if direction == "read" and kind == ssl._TLSMessageType.NEWSESSION_TICKET:  # type: ignore[attr-defined]
            received.append(kind)

    context._msg_callback = hook  # type: ignore[attr-defined]
    return received


def _whoami_on_a_new_connection(
    tc: TrafficCenterUnderTest, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> _Answered:
    """GET /v1/whoami on a connection of its own, resuming ``session`` if given; read to
    the server's close, so the session's ticket has arrived."""
    url = urlsplit(tc.url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host, session=session) as tls,
    ):
        request = f"GET /v1/whoami HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        answer = b""
        with contextlib.suppress(ssl.SSLEOFError, ConnectionResetError):
            while chunk := tls.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        return _Answered(status, answer.partition(b"\r\n\r\n")[2], tls.session_reused, tls.session)
