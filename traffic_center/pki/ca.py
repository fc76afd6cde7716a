"""The certificate authority: create or load it, issue certificates for one role each, sign CRLs."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from traffic_center.domain.errors import (
    CaAlreadyExists,
    CaMissing,
    CaUnusable,
    InvalidCsr,
    InvalidSubjectName,
    InvalidValidity,
    OutputNotWritable,
)
from traffic_center.domain.identifiers import parse_brin, parse_host_name, parse_routeringskenmerk
from traffic_center.domain.models import (
    DEFAULT_CRL_DAYS,
    DEFAULT_LEAF_DAYS,
    MAX_CRL_DAYS,
    MAX_LEAF_DAYS,
    MIN_CRL_DAYS,
    CertificateRecord,
)

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_DAYS = 10 * 365
# Backdate a little so a peer whose clock runs slightly behind still accepts a new certificate.
CLOCK_SKEW = dt.timedelta(minutes=5)
ENDPOINT_URI_PREFIX = "urn:oso:aanleverpunt:"
RELAY_URI = "urn:oso:traffic-center:relay"
PROXY_URI = "urn:oso:traffic-center:proxy"
# RFC 5280 Appendix A.1: ub-common-name and ub-organization-name are both 64 characters.
MAX_NAME_LENGTH = 64
# What `--out` may end in: the admin named the certificate file, not the prefix.
_OUT_SUFFIX = ".pem"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate: x509.Certificate
    private_key: PrivateKey | None  # None when issued from a CSR: the key stays at the school

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        assert self.private_key is not None
        return private_key_to_pem(self.private_key)


def private_key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# Modes given at creation, so an admin's umask can only tighten them: under `umask 000` the
# CA's directory was 0777 and ca.pem 0666, anyone on the host could replace the trust anchor.
_DIRECTORY_MODE = 0o755
_PUBLIC_MODE = 0o644


def _make_directories(directory: Path) -> None:
    """``mkdir -p`` with our mode for every directory made (pathlib gives the parents it makes
    the umask's default: a new home under `umask 000` was 0777, its ca/ replaceable)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(mode=_DIRECTORY_MODE, exist_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret so it is never readable by others, not even for a moment."""
    _make_directories(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public(path: Path, data: bytes) -> None:
    """A certificate or CRL: readable by all, writable by its owner alone."""
    _make_directories(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PUBLIC_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def output_prefix(out: str) -> Path:
    """What `--out` names: a file prefix, ``PREFIX`` for PREFIX.pem and PREFIX.key.

    ``school.pem`` means the prefix ``school`` (not school.pem.pem); a directory (a trailing
    slash, or one that exists) names no file, so it is refused rather than turned into
    ``DIR.pem`` beside it.
    """
    if not out.strip():
        raise OutputNotWritable("--out must name a file prefix, e.g. DIR/school")
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        raise OutputNotWritable(
            f"--out {out!r} is a directory; give a file prefix, e.g. DIR/school"
        )
    prefix = Path(out)
    return prefix.with_suffix("") if prefix.suffix == _OUT_SUFFIX else prefix


def output_paths(issued: IssuedCertificate, prefix: Path) -> list[Path]:
    """PREFIX.key (when we generated the key) and PREFIX.pem."""
    names = ([".key"] if issued.private_key is not None else []) + [".pem"]
    return [prefix.with_name(prefix.name + suffix) for suffix in names]


def refuse_overwrite(issued: IssuedCertificate, prefix: Path) -> None:
    for target in output_paths(issued, prefix):
        if target.exists():
            raise InvalidValidity(f"{target} exists; refusing to overwrite it")


def write_issued(issued: IssuedCertificate, prefix: Path) -> list[Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pem; refuse to overwrite either. All or
    nothing: when one cannot be written, the other is removed and OutputNotWritable says why."""
    refuse_overwrite(issued, prefix)
    paths = output_paths(issued, prefix)
    written: list[Path] = []
    try:
        if issued.private_key is not None:
            write_private(paths[0], issued.private_key_pem())
            written.append(paths[0])
        write_public(paths[-1], issued.certificate_pem())
    except OSError as exc:
        remove_written([*written, paths[-1]])
        raise OutputNotWritable(f"cannot write {exc.filename or prefix}: {exc.strerror}") from exc
    return paths


def remove_written(paths: Iterable[Path]) -> None:
    """Take back what a failed issue wrote: a key whose certificate was never recorded must
    not be left lying about, nor mistaken for an issued one."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never written
            path.unlink()


def new_private_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to generate, accepted by every TLS stack a LAS vendor uses.
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateAuthority:
    """The TC's own CA. Build it with :meth:`create` or :meth:`load`; it holds no global state."""

    def __init__(self, certificate: x509.Certificate, private_key: PrivateKey) -> None:
        self.certificate = certificate
        self._private_key = private_key
        # Where issued certificates say the CRL is (RFC 5280 §4.2.1.13), e.g. a web location
        # (`ca crl --out` writes its file) such as http://crl.tc.example/oso.crl; None: none.
        self.crl_url: str | None = None

    # --- life cycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, *, name: str = "OSO Traffic Center CA"
    ) -> CertificateAuthority:
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            raise CaAlreadyExists(f"a CA already exists in {directory}; refusing to touch it")
        subject_name(name, flag="--name")
        key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OSO Traffic Center"),
            ]
        )
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA384())
        )
        write_private(key_path, private_key_to_pem(key))
        write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        return cls(certificate, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.is_file() and not key_path.is_file():
            # A node's home: it holds ca.pem only (nodes never hold the CA key).
            raise CaMissing(
                f"no CA key in {directory} (only {CA_CERT_FILE}, as a node's home has): run "
                "this where the CA's key is, with --home of the admin's home"
            )
        if not cert_path.is_file():
            raise CaMissing(f"no CA in {directory}; run `traffic-center ca init` first")
        certificate = _load_ca_certificate(cert_path)
        key = _load_ca_key(key_path)
        if not _same_public_key(certificate, key):
            # Everything signed with another key would be inventoried yet verify nowhere.
            raise CaUnusable(f"{key_path} is not the key of {cert_path}; refusing to sign with it")
        return cls(certificate, key)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    # --- issuing ------------------------------------------------------------------------------

    def issue_client_certificate(
        self,
        *,
        routeringskenmerk: str,
        brin: str,
        name: str,
        csr_pem: bytes | None = None,
        days: int = DEFAULT_LEAF_DAYS,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """One endpoint's identity: serialNumber = routeringskenmerk, O = school, clientAuth only."""
        parse_routeringskenmerk(routeringskenmerk)
        parse_brin(brin)
        subject_name(name, flag="--name")
        public_key, private_key = self._key_for(csr_pem)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.SERIAL_NUMBER, routeringskenmerk),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, brin),
                x509.NameAttribute(NameOID.COMMON_NAME, f"aanleverpunt {routeringskenmerk}"),
            ]
        )
        san = [x509.UniformResourceIdentifier(f"{ENDPOINT_URI_PREFIX}{brin}:{routeringskenmerk}")]
        certificate = self._sign_leaf(
            subject=subject,
            public_key=public_key,
            san=san,
            purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
            validity=self._validity(days, not_before, not_after),
        )
        return IssuedCertificate(certificate, private_key)

    def issue_server_certificate(
        self,
        *,
        hosts: Sequence[str],
        csr_pem: bytes | None = None,
        days: int = DEFAULT_LEAF_DAYS,
    ) -> IssuedCertificate:
        """A listener's certificate: the hosts as DNS or IP SANs, serverAuth only.

        With ``csr_pem`` (a LAS vendor's server) only the CSR's public key is used: its
        subject and the names it asks for are ignored, exactly as for a client certificate.
        The names are the admin's ``hosts``, so a CSR cannot widen what the certificate covers.
        """
        if not hosts:
            raise InvalidValidity("give at least one --host")
        names = [_host_name(h) for h in hosts]
        public_key, private_key = self._key_for(csr_pem)
        certificate = self._sign_leaf(
            subject=_server_subject(names[0]),
            public_key=public_key,
            san=names,
            purpose=ExtendedKeyUsageOID.SERVER_AUTH,
            validity=self._validity(days, None, None),
        )
        return IssuedCertificate(certificate, private_key)

    def issue_relay_certificate(
        self, *, name: str = "OSO Traffic Center relay", days: int = DEFAULT_LEAF_DAYS
    ) -> IssuedCertificate:
        """The TC's own client certificate for calling LAS endpoints; clientAuth only."""
        key = new_private_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OSO Traffic Center"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        certificate = self._sign_leaf(
            subject=subject,
            public_key=key.public_key(),
            san=[x509.UniformResourceIdentifier(RELAY_URI)],
            purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
            validity=self._validity(days, None, None),
        )
        return IssuedCertificate(certificate, key)

    def issue_proxy_certificate(
        self,
        *,
        name: str = "OSO Traffic Center proxy",
        csr_pem: bytes | None = None,
        days: int = DEFAULT_LEAF_DAYS,
    ) -> IssuedCertificate:
        """A TLS-terminating proxy's client certificate towards the nodes; clientAuth only.

        Its own SAN URI gives it its own role: a node believes the RFC 9440 ``Client-Cert``
        header only on a connection presenting such a certificate. No routeringskenmerk, so
        it can never pass as a school itself.
        """
        public_key, private_key = self._key_for(csr_pem)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OSO Traffic Center"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        certificate = self._sign_leaf(
            subject=subject,
            public_key=public_key,
            san=[x509.UniformResourceIdentifier(PROXY_URI)],
            purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
            validity=self._validity(days, None, None),
        )
        return IssuedCertificate(certificate, private_key)

    # --- revocation ---------------------------------------------------------------------------

    def build_crl(
        self,
        revoked: Iterable[CertificateRecord],
        *,
        number: int,
        next_update_days: int = DEFAULT_CRL_DAYS,
    ) -> x509.CertificateRevocationList:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(now + crl_lifetime(next_update_days))
            # RFC 5280 §5.2.3: a conforming CRL issuer MUST include the CRL number, so a
            # relying party can tell which of two CRLs is the newer.
            .add_extension(x509.CRLNumber(number), critical=False)
            # RFC 5280 §5.2.1: and the authority key identifier, naming the key that signed.
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._private_key.public_key()),
                critical=False,
            )
        )
        for record in revoked:
            assert record.revoked_at is not None
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(record.serial, 16))
                .revocation_date(record.revoked_at)
            )
            reason = REVOCATION_REASONS.get(record.revocation_reason or "unspecified")
            if reason is not None and reason is not x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self._private_key, _hash_for(self._private_key))

    # --- helpers ------------------------------------------------------------------------------

    def _key_for(self, csr_pem: bytes | None) -> tuple[PublicKey, PrivateKey | None]:
        if csr_pem is None:
            key = new_private_key()
            return key.public_key(), key
        return public_key_from_csr(csr_pem), None

    def _validity(
        self, days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
    ) -> tuple[dt.datetime, dt.datetime]:
        if not 1 <= days <= MAX_LEAF_DAYS:
            raise InvalidValidity(f"--days must be between 1 and {MAX_LEAF_DAYS}, not {days}")
        start = not_before or (_now() - CLOCK_SKEW)
        end = not_after or (start + CLOCK_SKEW + dt.timedelta(days=days))
        if end > self.certificate.not_valid_after_utc:
            end = self.certificate.not_valid_after_utc
        if end <= start:
            raise InvalidValidity("the certificate would end before it starts")
        return start, end

    def _sign_leaf(
        self,
        *,
        subject: x509.Name,
        public_key: PublicKey,
        san: Sequence[x509.GeneralName],
        purpose: x509.ObjectIdentifier,
        validity: tuple[dt.datetime, dt.datetime],
    ) -> x509.Certificate:
        ca_public = self.certificate.public_key()
        assert isinstance(ca_public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(public_key), critical=True)
            # RFC 5280 §4.2.1.12: one purpose per certificate, so a client certificate can
            # never be used to impersonate a server and the reverse.
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            # RFC 5280 §4.2.1.6: with an empty subject the SAN is the only name, so critical.
            .add_extension(x509.SubjectAlternativeName(san), critical=not list(subject))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        if self.crl_url is not None:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        return builder.sign(self._private_key, _hash_for(self._private_key))


REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    # RFC 5280 §5.3.1 reason names, as `ca revoke --reason` takes them.
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}


def public_key_from_csr(csr_pem: bytes) -> PublicKey:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidCsr(f"not a PEM certificate signing request: {exc}") from exc
    if not csr.is_signature_valid:
        raise InvalidCsr("the CSR's signature does not verify")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in {"secp256r1", "secp384r1"}:
        return key
    raise InvalidCsr("the CSR's key must be RSA of at least 2048 bits or EC P-256/P-384")


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _host_name(host: str) -> x509.GeneralName:
    """An IP address as an IP SAN, anything else as a DNS SAN once it is a host name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(parse_host_name(host))


def _server_subject(first: x509.GeneralName) -> x509.Name:
    """CN = the first host, as TLS clients before SANs expected; none when it is longer than
    ub-common-name allows (the SAN is what clients check, RFC 6125 §6.4.4)."""
    common_name = str(first.value)
    if len(common_name) > MAX_NAME_LENGTH:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def subject_name(value: str, *, flag: str) -> str:
    """A name for a subject's CN or O: one line of 1 to 64 characters (RFC 5280 A.1)."""
    if not value.strip():
        raise InvalidSubjectName(f"{flag} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidSubjectName(
            f"{flag} is {len(value)} characters; a certificate holds at most {MAX_NAME_LENGTH}"
        )
    if not value.isprintable():  # a newline would split `ca list`'s table, and any reader's
        raise InvalidSubjectName(f"{flag} must be one line of printable characters")
    return value


def _load_ca_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CaUnusable(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CaUnusable(f"{path} is not a PEM certificate") from exc


def _load_ca_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except TypeError as exc:  # cryptography's way of saying "it wants a password"
        raise CaUnusable(
            f"{path} is encrypted; encrypted CA keys are not supported: keep it unencrypted "
            "on an encrypted, access-controlled disk"
        ) from exc
    except OSError as exc:
        raise CaUnusable(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CaUnusable(f"{path} is not a PEM private key") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CaUnusable(f"{path} holds an unsupported key type")
    return key


def _same_public_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    def spki(public: object) -> bytes:
        assert isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(certificate.public_key()) == spki(key.public_key())


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    # RSA key exchange needs keyEncipherment; EC keys sign only.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def crl_lifetime(days: int) -> dt.timedelta:
    """From a CRL's signing to its nextUpdate; refused outside the bounds (domain/models.py)."""
    if not MIN_CRL_DAYS <= days <= MAX_CRL_DAYS:
        raise InvalidValidity(
            f"--days must be between {MIN_CRL_DAYS} and {MAX_CRL_DAYS} for a CRL, not {days}"
        )
    return dt.timedelta(days=days)
