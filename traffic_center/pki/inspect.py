"""Reading certificates: serial format, role, routeringskenmerk, the inventory record, and a
certificate forwarded in an RFC 9440 Client-Cert header."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from traffic_center.domain.errors import ForwardedCertificateMalformed, InvalidInput
from traffic_center.domain.models import CertificateRecord, CertificateRole
from traffic_center.pki.ca import ENDPOINT_URI_PREFIX, PROXY_URI, RELAY_URI


def serial_hex(certificate: x509.Certificate) -> str:
    """The serial in upper-case hex, no separators, no leading zero: `openssl x509 -serial`
    prints the same digits padded to an even count (``08AC…`` for ``8AC…``); `ca revoke`
    takes either. The inventory keys certificates by this form."""
    return format(certificate.serial_number, "X")


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """As `openssl x509 -noout -fingerprint -sha256` prints it: upper-case hex, colons."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


_HEX = re.compile(r"[0-9A-F]+")


def normalise_serial(text: str) -> str:
    """Accept the serial with colons, a 0x prefix or lower case, as admins will paste it;
    InvalidInput for what is no serial at all ("" was looked up as serial 0, ``xyz!`` as
    itself, and both were "no certificate with serial …")."""
    cleaned = text.strip().replace(":", "").upper().removeprefix("0X")
    if not _HEX.fullmatch(cleaned):
        raise InvalidInput(f"not a certificate serial: {text!r} (hexadecimal, as `ca list` shows)")
    return cleaned.lstrip("0") or "0"


def routeringskenmerk_of(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if values else None


def organisation_of(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def organisational_unit_of(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(values[0].value) if values else None


def uris_of(certificate: x509.Certificate) -> list[str]:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.UniformResourceIdentifier))


def endpoint_names_agree(certificate: x509.Certificate) -> bool:
    """One serialNumber, one OU and one endpoint SAN URI, all naming the same endpoint.

    The CA writes all three from one routeringskenmerk and BRIN (``issue_client_certificate``);
    a certificate where they differ was mis-issued or forged, and which name to believe would
    be a guess (design.md, "Certificates").
    """
    subject = certificate.subject
    serials = subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    units = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    endpoint_uris = [u for u in uris_of(certificate) if u.startswith(ENDPOINT_URI_PREFIX)]
    if len(serials) != 1 or len(units) != 1 or len(endpoint_uris) != 1:
        return False
    expected = f"{ENDPOINT_URI_PREFIX}{units[0].value!s}:{serials[0].value!s}"
    return endpoint_uris[0] == expected


def extended_key_usages(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def is_client_certificate(certificate: x509.Certificate) -> bool:
    return extended_key_usages(certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def role_of(certificate: x509.Certificate) -> CertificateRole:
    if ExtendedKeyUsageOID.SERVER_AUTH in extended_key_usages(certificate):
        return CertificateRole.SERVER
    uris = uris_of(certificate)
    if RELAY_URI in uris:
        return CertificateRole.RELAY
    return CertificateRole.PROXY if PROXY_URI in uris else CertificateRole.CLIENT


def record_of(certificate: x509.Certificate) -> CertificateRecord:
    return CertificateRecord(
        serial=serial_hex(certificate),
        role=role_of(certificate),
        routeringskenmerk=routeringskenmerk_of(certificate),
        subject=certificate.subject.rfc4514_string(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        revoked_at=None,
        revocation_reason=None,
    )


# RFC 8941 §3.3.5: a byte sequence is ":" base64 (RFC 4648 §4 alphabet, padded) ":"; RFC 9440
# §2.2 puts exactly one DER certificate in it. Surrounding spaces are the field's OWS.
_BYTE_SEQUENCE = re.compile(r":([A-Za-z0-9+/]*={0,2}):")


def certificate_from_client_cert_header(value: str) -> x509.Certificate:
    """The certificate in an RFC 9440 ``Client-Cert`` field; anything else is refused."""
    match = _BYTE_SEQUENCE.fullmatch(value.strip(" \t"))
    if match is None:
        raise ForwardedCertificateMalformed(
            "Client-Cert must be one RFC 8941 byte sequence: ':' base64(DER) ':'"
        )
    try:
        der = base64.b64decode(match.group(1), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise ForwardedCertificateMalformed(
            "Client-Cert does not hold a DER X.509 certificate"
        ) from exc


def is_issued_by(certificate: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    """Whether one of ``issuers`` signed ``certificate`` (name and signature, RFC 5280 §6.1.3)."""
    for issuer in issuers:
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
