"""TLS-terminating proxies: a node believes the RFC 9440 Client-Cert header only from a proxy
certificate of the TC CA, and gives the forwarded certificate every check a direct one gets.
Real TLS against a real node, then through a real HAProxy with deploy/haproxy/."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.messages import open_session, session_body
from tests.support.processes import clean_env
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import (
    Party,
    client_context,
    unregistered_certificate,
)
from traffic_center.cli.main import main
from traffic_center.domain.audit import AuditRecord, AuditType
from traffic_center.pki.ca import PROXY_URI, write_issued

HAPROXY_TLS = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "tls-terminating.cfg"
REFUSED_HERE = "DoorgestuurdCertificaatGeweigerd"


def rfc9440(certificate: x509.Certificate) -> str:
    """The Client-Cert field value: an RFC 8941 byte sequence of the DER certificate."""
    return ":" + base64.b64encode(certificate.public_bytes(Encoding.DER)).decode() + ":"


def certificate_of(party: Party) -> x509.Certificate:
    return x509.load_pem_x509_certificate(party.cert.read_bytes())


def pem_pair(prefix: Path) -> tuple[Path, Path]:
    return prefix.with_name(prefix.name + ".pem"), prefix.with_name(prefix.name + ".key")


def serial_of(prefix: Path) -> str:
    """The serial of PREFIX.pem as `ca list` prints it."""
    return format(
        x509.load_pem_x509_certificate(pem_pair(prefix)[0].read_bytes()).serial_number, "X"
    )


@contextlib.asynccontextmanager
async def connected_as(
    tc: TrafficCenterUnderTest, prefix: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A client presenting PREFIX.pem/PREFIX.key to the node."""
    context = client_context(tc.ca_pem, *pem_pair(prefix))
    async with httpx.AsyncClient(base_url=tc.url, verify=context, timeout=10) as client:
        yield client


async def proxy_prefix(tc: TrafficCenterUnderTest, directory: Path) -> Path:
    prefix = directory / "proxy"
    await tc.certificates.issue_proxy(out=prefix)
    return prefix


async def last_record(tc: TrafficCenterUnderTest) -> AuditRecord:
    records = [item.record async for item in tc.store.audit.walk()]
    return records[-1]


async def assert_refused(
    response: httpx.Response, tc: TrafficCenterUnderTest, code: str, *, serial: str | None
) -> None:
    """Refused with ``code`` and on the record as a refused caller, under ``serial``."""
    assert response.json()["code"] == code, response.text
    record = await last_record(tc)
    assert (record.type, record.result, record.caller_serial) == (
        AuditType.REFUSED_CALLER,
        code,
        serial,
    )


# --- the CLI -----------------------------------------------------------------------------------


def test_ca_issue_proxy_makes_its_own_role_and_lists_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(home), "ca", "init"]) == 0
    assert main(["--home", str(home), "ca", "issue-proxy", "--days", "30", "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    serial = capsys.readouterr().out.strip()
    certificate = x509.load_pem_x509_certificate((tmp_path / "p.pem").read_bytes())
    assert format(certificate.serial_number, "X") == serial
    assert oct((tmp_path / "p.key").stat().st_mode & 0o777) == "0o600"
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [PROXY_URI]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)

    assert main(["--home", str(home), "ca", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["serial"], c["role"], c["status"]) for c in listed] == [(serial, "proxy", "valid")]


# --- in process: what the node believes --------------------------------------------------------


async def test_a_proxy_forwarding_a_school_acts_as_that_school(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    doel, bron = await tc.world.schools("VO", "PO")
    forwarded = {"Client-Cert": rfc9440(certificate_of(doel)), "Client-Cert-Chain": ":eA==:"}
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        whoami = await proxy.get("/v1/whoami", headers=forwarded)
        assert whoami.status_code == 200, whoami.text
        assert (whoami.json()["serial"], whoami.json()["routeringskenmerk"]) == (
            doel.serial,
            doel.routeringskenmerk,
        )
        granted = await proxy.post("/v1/sessions", json=session_body(bron), headers=forwarded)
        assert granted.status_code == 201, granted.text
    record = await last_record(tc)
    assert (record.type, record.caller_serial, record.doel_routeringskenmerk) == (
        AuditType.SESSION,
        doel.serial,
        doel.routeringskenmerk,
    )


async def test_a_revoked_forwarded_certificate_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    school = await tc.world.school("PO")
    await tc.certificates.revoke(school.serial, reason="keyCompromise")
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        response = await proxy.get(
            "/v1/whoami", headers={"Client-Cert": rfc9440(certificate_of(school))}
        )
    assert response.status_code == 403
    await assert_refused(response, tc, "CertificaatIngetrokken", serial=school.serial)


async def test_an_expired_forwarded_certificate_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = await unregistered_certificate(
        tc.certificates,
        name="Expired",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        response = await proxy.get(
            "/v1/whoami", headers={"Client-Cert": rfc9440(issued.certificate)}
        )
    assert response.status_code == 403
    assert response.json()["code"] == "CertificaatVerlopen"


def forged_copy(original: x509.Certificate) -> x509.Certificate:
    """Every field of a registered school's certificate (serial, issuer name, subject,
    extensions), signed by somebody else's key: only the signature tells it apart."""
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(original.issuer)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(original.serial_number)
        .not_valid_before(original.not_valid_before_utc)
        .not_valid_after(original.not_valid_after_utc)
    )
    for extension in original.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder.sign(key, hashes.SHA384())


async def test_a_forwarded_certificate_from_another_ca_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    school = await tc.world.school("PO")
    forged = forged_copy(certificate_of(school))
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        response = await proxy.get("/v1/whoami", headers={"Client-Cert": rfc9440(forged)})
    assert response.status_code == 403
    assert response.json()["code"] == "CertificaatOnbekend"
    assert "TC CA" in response.json()["detail"]


@pytest.mark.parametrize(
    "values",
    [
        ["garbage"],
        [""],
        [":not base64!:"],
        [":Zm9yZ2Vk:"],  # base64, but not a certificate
        ["Zm9yZ2Vk"],  # no colons: a token, not a byte sequence
        [":Zm9yZ2V:"],  # bad padding
    ],
)
async def test_a_malformed_client_cert_header_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path, values: list[str]
) -> None:
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        response = await proxy.get("/v1/whoami", headers=[("Client-Cert", v) for v in values])
    assert response.status_code == 400
    assert response.json()["code"] == "DoorgestuurdCertificaatOngeldig"


async def test_two_client_cert_fields_are_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    """A second certificate cannot hide behind the first (RFC 9440 §2.2: one certificate)."""
    first, second = await tc.world.schools("PO", "VO")
    headers = [("Client-Cert", rfc9440(certificate_of(p))) for p in (first, second)]
    async with connected_as(tc, await proxy_prefix(tc, tmp_path)) as proxy:
        response = await proxy.get("/v1/whoami", headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "DoorgestuurdCertificaatOngeldig"


async def test_client_cert_from_a_school_connection_is_refused(tc: TrafficCenterUnderTest) -> None:
    """Never silently ignored: the school may not speak for another, nor for itself this way."""
    school, victim = await tc.world.schools("VO", "PO")
    for claimed in (victim, school):
        response = await school.client().get(
            "/v1/whoami", headers={"Client-Cert": rfc9440(certificate_of(claimed))}
        )
        assert response.status_code == 403
        await assert_refused(response, tc, REFUSED_HERE, serial=school.serial)
    bron = await tc.world.school("PO")
    response = await school.client().post(
        "/v1/sessions",
        json=session_body(bron),
        headers={"Client-Cert": rfc9440(certificate_of(victim))},
    )
    assert response.status_code == 403
    assert response.json()["code"] == REFUSED_HERE
    assert (await open_session(school, bron)).status_code == 201  # its own identity still works


async def test_client_cert_from_the_relay_certificate_is_refused(
    tc: TrafficCenterUnderTest,
) -> None:
    school = await tc.world.school("PO")
    relay = tc.settings.home / "relay"
    async with connected_as(tc, relay) as client:
        response = await client.get(
            "/v1/whoami", headers={"Client-Cert": rfc9440(certificate_of(school))}
        )
    assert response.status_code == 403
    await assert_refused(response, tc, REFUSED_HERE, serial=serial_of(relay))


async def test_a_proxy_without_client_cert_is_not_a_school(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    prefix = await proxy_prefix(tc, tmp_path)
    async with connected_as(tc, prefix) as proxy:
        response = await proxy.get("/v1/whoami")
    assert response.status_code == 403
    await assert_refused(response, tc, "DoorgestuurdCertificaatOntbreekt", serial=serial_of(prefix))


async def test_a_revoked_or_unrecorded_proxy_certificate_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    school = await tc.world.school("PO")
    forwarded = {"Client-Cert": rfc9440(certificate_of(school))}
    revoked = await proxy_prefix(tc, tmp_path)
    serial = serial_of(revoked)
    await tc.certificates.revoke(serial, reason="keyCompromise")
    async with connected_as(tc, revoked) as proxy:
        response = await proxy.get("/v1/whoami", headers=forwarded)
    assert response.status_code == 403
    await assert_refused(response, tc, REFUSED_HERE, serial=serial)
    assert "revoked" in response.json()["detail"]

    # Signed by the TC CA but never recorded (a lost backup, say): not a proxy of ours.
    write_issued(tc.ca.issue_proxy_certificate(), tmp_path / "ghost")
    async with connected_as(tc, tmp_path / "ghost") as proxy:
        response = await proxy.get("/v1/whoami", headers=forwarded)
    assert response.status_code == 403
    assert response.json()["code"] == REFUSED_HERE


async def test_revoking_a_proxy_reaches_its_open_connection_within_5_seconds(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    """The same short cache as a direct certificate: a proxy's keep-alive connection opened
    before the revocation is refused within seconds (rule 1)."""
    school = await tc.world.school("PO")
    forwarded = {"Client-Cert": rfc9440(certificate_of(school))}
    prefix = await proxy_prefix(tc, tmp_path)
    async with connected_as(tc, prefix) as proxy:
        assert (await proxy.get("/v1/whoami", headers=forwarded)).status_code == 200
        await tc.certificates.revoke(serial_of(prefix), reason="keyCompromise")
        revoked_at = time.monotonic()
        while True:
            response = await proxy.get("/v1/whoami", headers=forwarded)
            if response.status_code != 200 or time.monotonic() - revoked_at > 6:
                break
            await asyncio.sleep(0.2)
    assert time.monotonic() - revoked_at < 5
    assert response.json()["code"] == REFUSED_HERE


async def test_a_forwarded_proxy_or_relay_certificate_is_not_a_school(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    prefix = await proxy_prefix(tc, tmp_path)
    relay = x509.load_pem_x509_certificate(pem_pair(tc.settings.home / "relay")[0].read_bytes())
    itself = x509.load_pem_x509_certificate(pem_pair(prefix)[0].read_bytes())
    async with connected_as(tc, prefix) as proxy:
        for certificate in (relay, itself):
            response = await proxy.get("/v1/whoami", headers={"Client-Cert": rfc9440(certificate)})
            assert response.status_code == 403
            assert response.json()["code"] == "CertificaatOngeldig"


# --- end to end through HAProxy (deploy/haproxy/tls-terminating.cfg) ---------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def substitute(text: str, pattern: str, replacement: str) -> str:
    """re.sub that fails the test when deploy/ no longer has what the test adapts."""
    changed, count = re.subn(pattern, replacement, text)
    assert count, f"{pattern!r} not in {HAPROXY_TLS.name}"
    return changed


def haproxy_config(tc: TrafficCenterUnderTest, port: int) -> str:
    """The repository's file on loopback: one node (this test's), its ops port for /readyz,
    no Docker DNS, a maxconn the test machine's file limit allows."""
    text = HAPROXY_TLS.read_text()
    text = substitute(text, r"maxconn \d+", "maxconn 256")
    text = substitute(text, r"\nresolvers dns\n(?:    .*\n)+", "\n")
    text = substitute(text, r" resolvers dns", "")
    text = substitute(text, r"bind :8443 ", f"bind 127.0.0.1:{port} ")
    text = substitute(text, r"bind :8404", f"bind 127.0.0.1:{free_port()}")
    text = substitute(text, r" port 9464 ", f" port {tc.server.ops.bound_port} ")
    return substitute(
        text,
        r"    server tc-1 .*\n    server tc-2 .*\n",
        f"    server tc-1 127.0.0.1:{tc.server.vendor.bound_port} verifyhost localhost\n",
    )


async def haproxy_files(tc: TrafficCenterUnderTest, directory: Path) -> Path:
    """What the file's header asks for, made as it says: ca.pem, lb.pem, proxy.pem."""
    await tc.certificates.issue_server(hosts=["127.0.0.1"], out=directory / "lb-cert")
    await tc.certificates.issue_proxy(out=directory / "proxy-cert")
    bundle_for_haproxy(tc.ca_pem, directory)
    return directory


def bundle_for_haproxy(ca_pem: Path, directory: Path) -> None:
    """HAProxy's format: certificate and key in one file."""
    shutil.copy(ca_pem, directory / "ca.pem")
    for name in ("lb", "proxy"):
        pem, key = pem_pair(directory / f"{name}-cert")
        (directory / f"{name}.pem").write_text(pem.read_text() + key.read_text())


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


@contextlib.contextmanager
def running_haproxy(config: Path, certs: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdout=output, stderr=subprocess.STDOUT,
            env={**clean_env(), "TC_PROXY_CERTS": str(certs)},
        )  # fmt: skip
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=10)


async def through_haproxy_until_up(client: httpx.AsyncClient, log: Path) -> httpx.Response:
    """HAProxy answers 503 until its first /readyz checks pass (rise 2, 1 s apart)."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(httpx.ConnectError):
            response = await client.get("/v1/whoami")
            if response.status_code != 503:
                return response
        assert time.monotonic() < deadline, read_log(log)
        await asyncio.sleep(0.2)


async def test_through_haproxy_a_school_is_itself_and_nobody_else(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    school, other = await tc.world.schools("VO", "PO")
    certs = await haproxy_files(tc, tmp_path / "tc")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(tc, port))
    log = tmp_path / "haproxy.log"
    base_url = f"https://127.0.0.1:{port}"
    with running_haproxy(config, certs, log):
        context = client_context(tc.ca_pem, school.cert, school.key)
        async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=10) as client:
            whoami = await through_haproxy_until_up(client, log)
            assert whoami.status_code == 200, whoami.text
            assert (whoami.json()["serial"], whoami.json()["brin"]) == (school.serial, school.brin)

            # An injected Client-Cert (another school's) is replaced by HAProxy.
            injected = await client.get(
                "/v1/whoami", headers={"Client-Cert": rfc9440(certificate_of(other))}
            )
            assert injected.status_code == 200, injected.text
            assert injected.json()["serial"] == school.serial

        # No client certificate: HAProxy (`verify required`) ends the handshake.
        anonymous = client_context(tc.ca_pem, None, None)
        async with httpx.AsyncClient(base_url=base_url, verify=anonymous, timeout=10) as client:
            # The TLS 1.3 alert arrives on the first read; httpx passes it on as it is.
            with pytest.raises((httpx.TransportError, ssl.SSLError)):
                await client.get("/v1/whoami")
