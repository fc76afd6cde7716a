"""Per-request certificate checks against the inventory, with a cache of a few seconds.

TLS already proved the chain to our CA and the validity dates; here we add what TLS cannot
know: that the certificate is in the inventory, is not revoked, is for clientAuth only, and
that its serialNumber, OU and endpoint URI name one endpoint, the inventory's.
The cache is short so a revocation reaches every worker and node within seconds, also on
keep-alive connections opened before it.

Behind a TLS-terminating proxy the school's certificate arrives in the RFC 9440
``Client-Cert`` header. It is believed only on a connection whose own certificate is a valid
proxy certificate in the inventory; TLS did not see the forwarded certificate, so its chain
to the TC CA and its dates are checked here, then every check a direct certificate gets.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509

from traffic_center.broker.caller import (
    Caller,
    CertificateIdentity,
    Peer,
    SessionAsked,
    SessionFound,
)
from traffic_center.domain.errors import (
    CallerRefused,
    CertificateExpired,
    CertificateInconsistent,
    CertificateMissing,
    CertificateRevoked,
    CertificateUnknown,
    CertificateWrongPurpose,
    EndpointInactive,
    EndpointNotRegistered,
    ForwardedCertificateMalformed,
    ForwardedCertificateMissing,
    ForwardedCertificateRefused,
)
from traffic_center.domain.models import (
    CertificateRecord,
    CertificateRole,
    CertificateStatus,
    Endpoint,
    School,
)
from traffic_center.pki.inspect import (
    certificate_from_client_cert_header,
    endpoint_names_agree,
    is_client_certificate,
    is_issued_by,
    organisation_of,
    organisational_unit_of,
    role_of,
    routeringskenmerk_of,
    serial_hex,
)
from traffic_center.store.store import Store

# About the connections one node keeps open at once; a miss costs one parse (~0.1 ms).
_PARSED_CERTIFICATES = 1024

# Refusals of the connection itself: the record names the certificate that connected.
_CONNECTION_REFUSALS = (
    CertificateMissing,
    ForwardedCertificateRefused,
    ForwardedCertificateMissing,
    ForwardedCertificateMalformed,
)


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float,
        clock: Callable[[], dt.datetime],
        trusted_issuers: Sequence[x509.Certificate] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._clock = clock
        # The TC CA (TC_CLIENT_CA): what a forwarded certificate must chain to. Empty means
        # no forwarded certificate can be believed (fail closed).
        self._trusted_issuers = tuple(trusted_issuers)
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, CertificateRecord | None]] = {}
        # The TLS certificate parsed and read once per connection, not twice per request (the
        # request guard and the exchange runner both ask): keyed by its PEM, the parse and
        # what its bytes say, nothing else; inventory, revocation and registration are read
        # for every request as before.
        self._parsed = functools.lru_cache(maxsize=_PARSED_CERTIFICATES)(_parsed_pem)

    async def identify(self, peer: Peer) -> CertificateIdentity:
        if peer.screened is not None:
            # Identified a moment ago in this same request (the request guard's screen):
            # the inventory is read once per request, and a revocation is seen as soon as
            # before, by the very next request.
            return peer.screened
        certificate = await self._presented(peer)
        routeringskenmerk = certificate.routeringskenmerk
        if not certificate.client_auth_only or routeringskenmerk is None:
            raise CertificateWrongPurpose()
        record = await self._record(certificate.serial)
        if record is None:
            raise CertificateUnknown()
        status = record.status_at(self._clock())
        if status is CertificateStatus.REVOKED:
            raise CertificateRevoked()
        if status is CertificateStatus.EXPIRED:
            raise CertificateExpired()
        # Rule 1, defence in depth: the names agree with each other and with the inventory.
        if not certificate.names_agree or record.routeringskenmerk != routeringskenmerk:
            raise CertificateInconsistent()
        return CertificateIdentity(
            serial=record.serial,
            routeringskenmerk=routeringskenmerk,
            name=certificate.organisation or "",
            not_after=record.not_after,
            brin=certificate.organisational_unit,
        )

    async def caller(self, peer: Peer) -> Caller:
        """Rule 1: the certificate must belong to an active endpoint of an active school."""
        identity = await self.identify(peer)
        registered = await self._store.registry.endpoint_with_school(identity.routeringskenmerk)
        return _bound(identity, registered)

    async def identity_as_registered(
        self, peer: Peer
    ) -> tuple[CertificateIdentity, Endpoint | None]:
        """whoami's check: an endpoint not (yet) registered is answered, but a registered one
        must be the OU's school, as every other route requires (rule 1)."""
        identity = await self.identify(peer)
        registered = await self._store.registry.endpoint_with_school(identity.routeringskenmerk)
        if registered is None:
            return identity, None
        _ensure_same_school(identity, registered[1])
        return identity, registered[0]

    async def caller_and_session(
        self, peer: Peer, asked: SessionAsked
    ) -> tuple[Caller, SessionFound]:
        """``caller``, with the session and endpoint a relay names read in the same statement
        (issue 14): the session is read as before, at once, but not on its own."""
        identity = await self.identify(peer)
        registered, session, endpoint = await self._store.sessions.with_caller(
            identity.routeringskenmerk, asked.sessie_id, asked.routeringskenmerk
        )
        return _bound(identity, registered), SessionFound(session, endpoint)

    def certificate_on_record(self, peer: Peer, refused: CallerRefused) -> x509.Certificate | None:
        """Whose refusal the record shows: the forwarded certificate's once the proxy was
        believed, else the certificate that connected."""
        if peer.client_cert_header is not None and not isinstance(refused, _CONNECTION_REFUSALS):
            try:
                return certificate_from_client_cert_header(peer.client_cert_header)
            except ForwardedCertificateMalformed:
                pass
        return _certificate_of_pem(peer.tls_certificate)

    async def _presented(self, peer: Peer) -> _Read:
        """The certificate to check: the TLS peer's own, or the one a valid proxy forwarded."""
        if not peer.tls_certificate:
            raise CertificateMissing()
        connection = self._parsed(peer.tls_certificate)
        is_proxy = connection.role is CertificateRole.PROXY
        if peer.client_cert_header is None:
            if is_proxy:
                raise ForwardedCertificateMissing()
            return connection
        if not is_proxy:
            # Never silently ignored: a school sending Client-Cert is trying to be another.
            raise ForwardedCertificateRefused(
                f"a Client-Cert header is refused from a {connection.role.value} "
                "certificate; only a proxy certificate of the TC CA may forward one"
            )
        await self._ensure_proxy_valid(connection)
        return _read(self._forwarded(peer.client_cert_header))

    async def _ensure_proxy_valid(self, connection: _Read) -> None:
        """The proxy certificate itself: clientAuth, in the inventory as a proxy, not revoked."""
        record = await self._record(connection.serial)
        if not connection.client_auth_only or record is None:
            raise ForwardedCertificateRefused("the proxy certificate is not in the inventory")
        if record.role is not CertificateRole.PROXY:
            raise ForwardedCertificateRefused("the certificate is not a proxy certificate")
        status = record.status_at(self._clock())
        if status is not CertificateStatus.VALID:
            raise ForwardedCertificateRefused(f"the proxy certificate is {status.value}")

    def _forwarded(self, header: str) -> x509.Certificate:
        """What TLS would have checked for a direct certificate: the chain and the dates."""
        forwarded = certificate_from_client_cert_header(header)
        if not is_issued_by(forwarded, self._trusted_issuers):
            raise CertificateUnknown("the forwarded certificate is not issued by the TC CA")
        now = self._clock()
        if not forwarded.not_valid_before_utc <= now <= forwarded.not_valid_after_utc:
            raise CertificateExpired()
        return forwarded

    async def _record(self, serial: str) -> CertificateRecord | None:
        now = self._monotonic()
        cached = self._cache.get(serial)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        record = await self._store.certificates.get(serial)
        self._cache[serial] = (now, record)
        return record


def _bound(identity: CertificateIdentity, registered: tuple[Endpoint, School] | None) -> Caller:
    """Rule 1's registration checks of a certificate's endpoint, as read."""
    if registered is None:
        raise EndpointNotRegistered()
    endpoint, school = registered
    _ensure_same_school(identity, school)
    if not school.active or not endpoint.active:
        raise EndpointInactive()
    return Caller(identity=identity, endpoint=endpoint, school=school)


def _ensure_same_school(identity: CertificateIdentity, school: School) -> None:
    if school.brin != identity.brin:  # the OU names another school than the registry
        raise CertificateInconsistent()


@dataclass(frozen=True, slots=True)
class _Read:
    """What ``identify`` reads of a certificate: a function of its bytes alone, so read once
    per connection's certificate with its parse (~40 us of extension and name lookups per
    request, issue 14); nothing of the inventory, which is read for every request."""

    role: CertificateRole
    serial: str
    routeringskenmerk: str | None
    client_auth_only: bool
    names_agree: bool
    organisation: str | None
    organisational_unit: str | None


def _read(certificate: x509.Certificate) -> _Read:
    return _Read(
        role=role_of(certificate),
        serial=serial_hex(certificate),
        routeringskenmerk=routeringskenmerk_of(certificate),
        client_auth_only=is_client_certificate(certificate),
        names_agree=endpoint_names_agree(certificate),
        organisation=organisation_of(certificate),
        organisational_unit=organisational_unit_of(certificate),
    )


def _parsed_pem(pem: str) -> _Read:
    return _read(x509.load_pem_x509_certificate(pem.encode()))


def _certificate_of_pem(pem: str | None) -> x509.Certificate | None:
    if pem is None:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
