"""Per-request certificate checks against the inventory, with a cache of a few seconds.

TLS already proved the chain to our CA and the validity dates; here we add what TLS cannot
know: that the certificate is in the inventory, is not revoked, is for clientAuth only, and
that its serialNumber, OU and endpoint URI name one endpoint, the inventory's.
The cache is short so a revocation reaches every worker and node within seconds, also on
keep-alive connections opened before it.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from cryptography import x509

from traffic_center.broker.caller import Caller, CertificateIdentity
from traffic_center.domain.errors import (
    CertificateExpired,
    CertificateInconsistent,
    CertificateMissing,
    CertificateRevoked,
    CertificateUnknown,
    CertificateWrongPurpose,
    EndpointInactive,
    EndpointNotRegistered,
)
from traffic_center.domain.models import CertificateRecord, CertificateStatus
from traffic_center.pki.inspect import (
    endpoint_names_agree,
    is_client_certificate,
    organisation_of,
    organisational_unit_of,
    routeringskenmerk_of,
    serial_hex,
)
from traffic_center.store.store import Store


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float,
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, CertificateRecord | None]] = {}

    async def identify(self, certificate_pem: str | None) -> CertificateIdentity:
        if not certificate_pem:
            raise CertificateMissing()
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        routeringskenmerk = routeringskenmerk_of(certificate)
        if not is_client_certificate(certificate) or routeringskenmerk is None:
            raise CertificateWrongPurpose()
        record = await self._record(serial_hex(certificate))
        if record is None:
            raise CertificateUnknown()
        status = record.status_at(self._clock())
        if status is CertificateStatus.REVOKED:
            raise CertificateRevoked()
        if status is CertificateStatus.EXPIRED:
            raise CertificateExpired()
        # Rule 1, defence in depth: the names agree with each other and with the inventory.
        if not endpoint_names_agree(certificate) or record.routeringskenmerk != routeringskenmerk:
            raise CertificateInconsistent()
        return CertificateIdentity(
            serial=record.serial,
            routeringskenmerk=routeringskenmerk,
            name=organisation_of(certificate) or "",
            not_after=record.not_after,
            brin=organisational_unit_of(certificate),
        )

    async def caller(self, certificate_pem: str | None) -> Caller:
        """Rule 1: the certificate must belong to an active endpoint of an active school."""
        identity = await self.identify(certificate_pem)
        registered = await self._store.registry.endpoint_with_school(identity.routeringskenmerk)
        if registered is None:
            raise EndpointNotRegistered()
        endpoint, school = registered
        if school.brin != identity.brin:  # the OU names another school than the inventory
            raise CertificateInconsistent()
        if not school.active or not endpoint.active:
            raise EndpointInactive()
        return Caller(identity=identity, endpoint=endpoint, school=school)

    async def _record(self, serial: str) -> CertificateRecord | None:
        now = self._monotonic()
        cached = self._cache.get(serial)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        record = await self._store.certificates.get(serial)
        self._cache[serial] = (now, record)
        return record
