"""Our own certificate in a TLS context, with its issuer's certificate given after it."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding


def load_own_certificate(
    context: ssl.SSLContext, *, cert: Path | str, key: Path | str, issuers: Path | str
) -> None:
    """``context.load_cert_chain(cert, key)``, with the issuer of a lone certificate after it.

    Given a certificate without a chain, OpenSSL builds the chain it sends at every handshake,
    from the context's trust store, with ``X509_verify_cert``: it checks our own certificate's
    signature each time, one P-384 verification (0.8 ms of CPU here) before the server's first
    answer, on the event loop (issue 14). nginx turns that off (``SSL_MODE_NO_AUTO_CHAIN``);
    Python's ssl cannot. A chain loaded with the certificate is sent as it is, unchecked: so
    a file holding one certificate whose issuer is in ``issuers`` (the CA file the context
    trusts) is loaded with that issuer after it. What goes on the wire does not change: the
    chain OpenSSL built was the same two certificates. Anything else (a file with its chain
    already, an issuer we do not hold) is loaded as it is.
    """
    own = Path(cert).read_bytes()
    issuer = _issuer_in(own, Path(issuers).read_bytes())
    if issuer is None:
        context.load_cert_chain(str(cert), str(key))
        return
    # ssl loads a chain only from a file: a temporary one, holding public certificates only.
    # Without a writable temporary directory (or if the chain will not load) the certificate
    # is loaded as it is, as before: slower handshakes rather than a node that does not start,
    # and a certificate or key that is wrong fails there, with ssl's own error.
    try:
        with tempfile.NamedTemporaryFile(prefix="tc-chain-", suffix=".pem") as chain:
            chain.write(own.rstrip(b"\n") + b"\n" + issuer.public_bytes(Encoding.PEM))
            chain.flush()
            context.load_cert_chain(chain.name, str(key))
        return
    except OSError:  # ssl.SSLError included
        pass
    context.load_cert_chain(str(cert), str(key))


def _issuer_in(own_pem: bytes, issuers_pem: bytes) -> x509.Certificate | None:
    """The certificate in ``issuers_pem`` that signed the one certificate in ``own_pem``;
    None if ``own_pem`` holds more or fewer than one, or is self-issued, or none signed it."""
    try:
        certificates = x509.load_pem_x509_certificates(own_pem)
        candidates = x509.load_pem_x509_certificates(issuers_pem)
    except ValueError:
        return None  # ssl reads the files next, and says what is wrong with them
    if len(certificates) != 1 or certificates[0].issuer == certificates[0].subject:
        return None
    own = certificates[0]
    for candidate in candidates:
        if candidate.subject != own.issuer:
            continue
        try:
            own.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return candidate
    return None
