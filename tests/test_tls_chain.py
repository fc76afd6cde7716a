"""Our own certificate is loaded with its issuer after it, so OpenSSL sends that chain as given
instead of building (and checking) one at every handshake (pki/chain.py, issue 14).

What the server sends is read off the wire by ``openssl s_client -showcerts``, from servers
whose contexts trust nothing: a chain OpenSSL built itself would come from the context's
trust store, so two certificates from such a server can only be the chain we loaded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from traffic_center.pki.ca import CertificateAuthority, write_issued
from traffic_center.pki.chain import load_own_certificate
from traffic_center.server.tls import server_ssl_context

OPENSSL = shutil.which("openssl")  # scripts/setup installs it where it is missing


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on loopback that closes each connection once its handshake is done."""

    def connected() -> asyncio.Protocol:
        class Close(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transport.close()

        return Close()

    server = await asyncio.get_running_loop().create_server(connected, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def chain_sent(port: int, *client_args: str) -> list[x509.Certificate]:
    """The certificates the server at ``port`` sends, in order."""
    assert OPENSSL is not None, "the openssl command is needed (scripts/setup installs it)"
    process = await asyncio.create_subprocess_exec(
        *(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", *client_args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    return x509.load_pem_x509_certificates(out) if b"BEGIN CERTIFICATE" in out else []


def a_server_context(load: Callable[[ssl.SSLContext], None]) -> ssl.SSLContext:
    """A server context that trusts no one: no store to build a chain from."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load(context)
    return context


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", name="Chain test CA")


@pytest.fixture
def server_cert(ca: CertificateAuthority, tmp_path: Path) -> Path:
    write_issued(ca.issue_server_certificate(hosts=["127.0.0.1"]), tmp_path / "server")
    return tmp_path / "server"


def ca_file(ca: CertificateAuthority, tmp_path: Path) -> Path:
    path = tmp_path / "ca" / "ca.pem"
    assert path.is_file()
    return path


async def test_a_lone_certificate_is_sent_with_its_issuer(
    ca: CertificateAuthority, server_cert: Path, tmp_path: Path
) -> None:
    cert, key = server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
    context = a_server_context(
        lambda c: load_own_certificate(c, cert=cert, key=key, issuers=ca_file(ca, tmp_path))
    )
    async with tls_server(context) as port:
        sent = await chain_sent(port)
    assert [c.subject for c in sent] == [
        x509.load_pem_x509_certificate(cert.read_bytes()).subject,
        ca.certificate.subject,
    ]
    # Without it, the same server sends the certificate alone (what OpenSSL would otherwise
    # build the chain from is the context's trust store, empty here).
    plain = a_server_context(lambda c: c.load_cert_chain(str(cert), str(key)))
    async with tls_server(plain) as port:
        assert len(await chain_sent(port)) == 1


async def test_a_certificate_file_with_its_chain_is_loaded_as_it_is(
    ca: CertificateAuthority, server_cert: Path, tmp_path: Path
) -> None:
    cert, key = server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
    full = tmp_path / "full.pem"
    full.write_bytes(cert.read_bytes() + ca.certificate_pem())
    context = a_server_context(
        lambda c: load_own_certificate(c, cert=full, key=key, issuers=ca_file(ca, tmp_path))
    )
    async with tls_server(context) as port:
        assert len(await chain_sent(port)) == 2  # not three: nothing appended twice


async def test_an_issuer_we_do_not_hold_or_an_impostor_is_not_appended(
    ca: CertificateAuthority, server_cert: Path, tmp_path: Path
) -> None:
    cert, key = server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
    stranger = CertificateAuthority.create(tmp_path / "stranger", name="Another CA")
    # Same name as our CA, another key: its name matches the issuer, its signature does not.
    impostor = CertificateAuthority.create(tmp_path / "impostor", name="Chain test CA")
    for issuers in (tmp_path / "stranger" / "ca.pem", tmp_path / "impostor" / "ca.pem"):
        context = a_server_context(
            functools.partial(load_own_certificate, cert=cert, key=key, issuers=issuers)
        )
        async with tls_server(context) as port:
            assert len(await chain_sent(port)) == 1, issuers
    assert stranger.certificate.subject != impostor.certificate.subject


async def test_the_vendor_listeners_context_sends_its_chain(
    ca: CertificateAuthority, server_cert: Path, tmp_path: Path
) -> None:
    cert, key = server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
    context = server_ssl_context(
        certfile=str(cert), keyfile=str(key), client_ca=str(ca_file(ca, tmp_path))
    )
    write_issued(
        ca.issue_client_certificate(
            routeringskenmerk="00000001000099000001", brin="99XX", name="X"
        ),
        tmp_path / "client",
    )
    client = ("-cert", str(tmp_path / "client.pem"), "-key", str(tmp_path / "client.key"))
    async with tls_server(context) as port:
        sent = await chain_sent(port, *client, "-CAfile", str(ca_file(ca, tmp_path)))
    assert [c.subject for c in sent][1:] == [ca.certificate.subject]


async def test_without_a_writable_temporary_directory_the_certificate_loads_as_before(
    ca: CertificateAuthority,
    server_cert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    with capture_logs() as logs:
        context = a_server_context(
            lambda c: load_own_certificate(c, cert=cert, key=key, issuers=ca_file(ca, tmp_path))
        )
    async with tls_server(context) as port:
        assert len(await chain_sent(port)) == 1  # served, the chain left to OpenSSL
    # The operator is told why handshakes cost more, once, at start-up.
    assert [(log["event"], log["log_level"], log["certificate"]) for log in logs] == [
        ("tls_chain_not_loaded", "warning", str(cert))
    ]


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool,
) -> x509.Certificate:
    """A certificate for ``subject``'s key, signed by ``issuer`` (name, key), else by itself."""
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


async def test_an_intermediate_and_its_root_follow_in_order(tmp_path: Path) -> None:
    """As OpenSSL built it from the same CA file: the issuer, its issuer, up to the root."""
    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    root = _certificate("Root", root_key, ca=True)
    middle = _certificate("Intermediate", middle_key, issuer=("Root", root_key), ca=True)
    leaf = _certificate("127.0.0.1", leaf_key, issuer=("Intermediate", middle_key), ca=False)
    cert, key, bundle = tmp_path / "leaf.pem", tmp_path / "leaf.key", tmp_path / "bundle.pem"
    cert.write_bytes(leaf.public_bytes(Encoding.PEM))
    key.write_bytes(leaf_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    # The root first: the order in the CA file is not the order of the chain.
    bundle.write_bytes(root.public_bytes(Encoding.PEM) + middle.public_bytes(Encoding.PEM))
    context = a_server_context(
        lambda c: load_own_certificate(c, cert=cert, key=key, issuers=bundle)
    )
    async with tls_server(context) as port:
        assert await chain_sent(port) == [leaf, middle, root]
