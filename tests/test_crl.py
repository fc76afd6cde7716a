"""The CRL published where a LAS can fetch it, and named in the certificates the CA issues."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from tests.support.server import TrafficCenterUnderTest
from traffic_center.pki.inspect import serial_hex


async def test_no_crl_before_one_is_published_then_the_newest_signed_one(
    tc: TrafficCenterUnderTest,
) -> None:
    school = await tc.world.school("PO")
    client = school.client()
    first = await client.get("/v1/crl")  # this module's Traffic Center revoked nothing yet
    assert (first.status_code, first.json()["code"]) == (404, "CrlNietGepubliceerd")

    victim = await tc.world.school("VO")
    await tc.certificates.revoke(victim.serial, reason="keyCompromise")
    answered = await client.get("/v1/crl")
    assert answered.status_code == 200
    assert answered.headers["content-type"] == "application/pkix-crl"
    assert "max-age=" in answered.headers["cache-control"]
    crl = x509.load_der_x509_crl(answered.content)
    assert crl.is_signature_valid(tc.ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == tc.ca.certificate.subject
    listed = {format(entry.serial_number, "X") for entry in crl}
    assert victim.serial in listed
    assert crl.next_update_utc is not None


async def test_issued_certificates_name_the_crl_when_configured(
    tc: TrafficCenterUnderTest,
) -> None:
    tc.ca.crl_url = "https://tc.example/v1/crl"
    try:
        issued = await tc.certificates.issue_server(hosts=["las.test"])
    finally:
        tc.ca.crl_url = None
    points = issued.certificate.extensions.get_extension_for_oid(
        ExtensionOID.CRL_DISTRIBUTION_POINTS
    ).value
    assert [name.value for point in points for name in point.full_name or []] == [
        "https://tc.example/v1/crl"
    ]
    plain = await tc.certificates.issue_server(hosts=["las.test"])
    assert ExtensionOID.CRL_DISTRIBUTION_POINTS not in [
        ext.oid for ext in plain.certificate.extensions
    ]
    assert serial_hex(plain.certificate) != serial_hex(issued.certificate)
