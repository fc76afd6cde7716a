"""The node's own TLS files, read once at start-up, so that a bad one is named in one line.

Loaded later by a listener or a worker, the same file fails deep inside ssl with an OpenSSL
reason ("PEM lib", "KEY_VALUES_MISMATCH") and no file name, and a worker that fails is
replaced and fails again, for ever.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from traffic_center.domain.errors import NodeMisconfigured


def check_key_pair(*, cert: Path, key: Path, cert_setting: str, key_setting: str) -> None:
    """NodeMisconfigured unless ``cert`` holds a certificate and ``key`` its private key."""
    certificate = _certificates(cert, cert_setting)[0]  # the leaf; a chain may follow it
    private_key = _private_key(key, key_setting)
    if certificate.public_key() != private_key.public_key():
        raise NodeMisconfigured(
            f"{key_setting} ({key}) is not the key of {cert_setting} ({cert}): "
            "give the key the certificate was issued for"
        )


def check_ca_bundle(path: Path, *, setting: str) -> None:
    """NodeMisconfigured unless ``path`` holds at least one PEM certificate."""
    _certificates(path, setting)


def _certificates(path: Path, setting: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path, setting))
    except ValueError as error:
        raise NodeMisconfigured(f"{setting} ({path}) holds no PEM certificate") from error


def _private_key(path: Path, setting: str) -> PrivateKeyTypes:
    try:
        return load_pem_private_key(_read(path, setting), password=None)
    except TypeError as error:
        # Loaded by ssl, OpenSSL would ask for the passphrase on the terminal, in every worker.
        raise NodeMisconfigured(
            f"{setting} ({path}) is encrypted: the node needs its key without a passphrase"
        ) from error
    except (ValueError, UnsupportedAlgorithm) as error:
        raise NodeMisconfigured(f"{setting} ({path}) holds no PEM private key") from error


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise NodeMisconfigured(f"{setting} ({path}) cannot be read: {error.strerror}") from error
