"""A client certificate's serialNumber, OU and endpoint URI must name one endpoint, the
inventory's, or the caller is refused (design.md, "Certificates"; real TLS, both backends)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.server import TrafficCenterUnderTest
from tests.support.world import client_context
from tests.test_broker_api import assert_problem
from traffic_center.pki.ca import ENDPOINT_URI_PREFIX
from traffic_center.pki.inspect import endpoint_names_agree, record_of


def mis_issue(
    tc: TrafficCenterUnderTest, directory: Path, *, serial_number: str, ou: str, uri: str
) -> tuple[Path, Path, x509.Certificate]:
    """A client certificate signed by the TC's CA with whatever names the test asks for."""
    ca_key = serialization.load_pem_private_key(
        (tc.settings.ca_dir / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mis-issued"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"aanleverpunt {serial_number}"),
                ]
            )
        )
        .issuer_name(tc.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "mis.pem", directory / "mis.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, certificate


async def call(tc: TrafficCenterUnderTest, cert: Path, key: Path, path: str) -> httpx.Response:
    context = client_context(tc.ca_pem, cert, key)
    async with httpx.AsyncClient(base_url=tc.url, verify=context, timeout=30) as client:
        return await client.get(path)


async def test_serial_number_naming_b_with_san_and_ou_naming_a_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    a, b = await tc.world.schools("PO", "VO")
    cert, key, certificate = mis_issue(
        tc,
        tmp_path / "b-as-a",
        serial_number=b.routeringskenmerk,
        ou=a.brin,
        uri=f"{ENDPOINT_URI_PREFIX}{a.brin}:{a.routeringskenmerk}",
    )
    await tc.store.certificates.add(record_of(certificate), issued_at=dt.datetime.now(dt.UTC))
    assert not endpoint_names_agree(certificate)
    for path in ("/v1/whoami", "/v1/endpoints"):
        assert_problem(await call(tc, cert, key, path), 403, "CertificaatInconsistent")
    # The legitimate certificates of both endpoints still work.
    assert (await a.client().get("/v1/whoami")).json()["routeringskenmerk"] == a.routeringskenmerk
    assert (await b.client().get("/v1/endpoints")).status_code == 200


async def test_names_that_agree_but_name_another_school_than_the_inventory_are_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    a, b = await tc.world.schools("PO", "VO")
    # serialNumber, OU and URI agree with each other, but B's endpoint belongs to B's school.
    cert, key, certificate = mis_issue(
        tc,
        tmp_path / "b-under-a",
        serial_number=b.routeringskenmerk,
        ou=a.brin,
        uri=f"{ENDPOINT_URI_PREFIX}{a.brin}:{b.routeringskenmerk}",
    )
    await tc.store.certificates.add(record_of(certificate), issued_at=dt.datetime.now(dt.UTC))
    assert endpoint_names_agree(certificate)
    # whoami too: it answered 200 with the registry's BRIN, then every real call was refused.
    for path in ("/v1/whoami", "/v1/endpoints"):
        assert_problem(await call(tc, cert, key, path), 403, "CertificaatInconsistent")


async def test_a_certificate_without_its_endpoint_uri_is_refused(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    a = await tc.world.school("PO")
    cert, key, certificate = mis_issue(
        tc,
        tmp_path / "no-uri",
        serial_number=a.routeringskenmerk,
        ou=a.brin,
        uri="urn:example:something-else",
    )
    await tc.store.certificates.add(record_of(certificate), issued_at=dt.datetime.now(dt.UTC))
    assert_problem(await call(tc, cert, key, "/v1/whoami"), 403, "CertificaatInconsistent")
