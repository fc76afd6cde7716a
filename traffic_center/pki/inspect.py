"""Reading certificates: serial format, role, routeringskenmerk, and the inventory record."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from traffic_center.domain.models import CertificateRecord, CertificateRole
from traffic_center.pki.ca import RELAY_URI


def serial_hex(certificate: x509.Certificate) -> str:
    """The serial as `openssl x509 -serial` prints it (upper-case hex, no separators)."""
    return format(certificate.serial_number, "X")


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """As `openssl x509 -noout -fingerprint -sha256` prints it: upper-case hex, colons."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def normalise_serial(text: str) -> str:
    """Accept the serial with colons, a 0x prefix or lower case, as admins will paste it."""
    cleaned = text.strip().replace(":", "").upper().removeprefix("0X").lstrip("0")
    return cleaned or "0"


def routeringskenmerk_of(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if values else None


def organisation_of(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


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
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return CertificateRole.RELAY if RELAY_URI in uris else CertificateRole.CLIENT


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
