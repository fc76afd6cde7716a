"""Our own certificate in a TLS context, with the chain of its issuers given after it."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from traffic_center.pki.inspect import is_issued_by

log = structlog.get_logger("traffic_center.tls")


def load_own_certificate(
    context: ssl.SSLContext, *, cert: Path | str, key: Path | str, issuers: Path | str
) -> None:
    """``context.load_cert_chain(cert, key)``, with the issuers of a lone certificate after it.

    Given a certificate without a chain, OpenSSL builds the chain it sends at every handshake,
    from the context's trust store, with ``X509_verify_cert``: it checks our own certificate's
    signature each time, one P-384 verification (0.8 ms of CPU here) before the server's first
    answer, on the event loop (issue 14). nginx turns that off (``SSL_MODE_NO_AUTO_CHAIN``);
    Python's ssl cannot. A chain loaded with the certificate is sent as it is, unchecked: so a
    file holding one certificate is loaded with the chain of its issuers found in ``issuers``
    (the CA file the context trusts), up to the root, which is what OpenSSL built from the
    same file: what goes on the wire does not change. Anything else (a file with its chain
    already, an issuer we do not hold) is loaded as it is.
    """
    own = Path(cert).read_bytes()
    chain = _issuers_in(own, Path(issuers).read_bytes())
    if not chain:
        context.load_cert_chain(str(cert), str(key))
        return
    # ssl loads a chain only from a file: a temporary one, holding public certificates only.
    # Without a writable temporary directory (or if the chain will not load) the certificate
    # is loaded as it is, as before: slower handshakes rather than a node that does not start,
    # and a certificate or key that is wrong fails there, with ssl's own error.
    try:
        with tempfile.NamedTemporaryFile(prefix="tc-chain-", suffix=".pem") as file:
            file.write(own.rstrip(b"\n") + b"\n")
            file.writelines(issuer.public_bytes(Encoding.PEM) for issuer in chain)
            file.flush()
            context.load_cert_chain(file.name, str(key))
        return
    except OSError as error:  # ssl.SSLError included
        log.warning(
            "tls_chain_not_loaded",
            certificate=str(cert),
            error=type(error).__name__,
            effect="OpenSSL builds the chain at every handshake (slower handshakes)",
        )
    context.load_cert_chain(str(cert), str(key))


def _issuers_in(own_pem: bytes, issuers_pem: bytes) -> list[x509.Certificate]:
    """The certificates in ``issuers_pem`` that signed the one certificate in ``own_pem``, its
    issuer first, up to a self-signed root or the first issuer not there; none if ``own_pem``
    holds more or fewer than one certificate, or is self-signed."""
    try:
        certificates = x509.load_pem_x509_certificates(own_pem)
        candidates = x509.load_pem_x509_certificates(issuers_pem)
    except ValueError:
        return []  # ssl reads the files next, and says what is wrong with them
    if len(certificates) != 1:
        return []
    chain: list[x509.Certificate] = []
    current = certificates[0]
    # Up to a self-signed root; an issuer met twice (certificates signing each other) ends it.
    while current.issuer != current.subject:
        issuer = next((c for c in candidates if is_issued_by(current, (c,))), None)
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return chain
