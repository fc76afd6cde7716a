"""Issue, list and revoke certificates; every issued certificate enters the inventory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from traffic_center.audit.admin import AdminAudit
from traffic_center.domain.audit import AuditType
from traffic_center.domain.errors import (
    CertificateAlreadyRevoked,
    EndpointNotInRegistry,
    InvalidValidity,
)
from traffic_center.domain.identifiers import parse_brin, parse_routeringskenmerk
from traffic_center.domain.models import DEFAULT_CRL_DAYS, CertificateRecord, CertificateStatus
from traffic_center.pki.ca import (
    REVOCATION_REASONS,
    CertificateAuthority,
    IssuedCertificate,
    crl_lifetime,
    remove_written,
    write_issued,
    write_public,
)
from traffic_center.pki.inspect import normalise_serial, record_of
from traffic_center.store.certificates import PublishedCrl
from traffic_center.store.store import Store


@dataclass(frozen=True, slots=True)
class ListedCertificate:
    record: CertificateRecord
    status: CertificateStatus


class CertificateAdmin:
    def __init__(
        self,
        ca: CertificateAuthority,
        store: Store,
        *,
        secret: bytes,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.ca = ca
        self.store = store
        self.clock = clock
        self.audit = AdminAudit(store, secret=secret, clock=clock)

    async def record(self, issued: IssuedCertificate, out: Path | None) -> list[Path]:
        """Files first, then the inventory: a certificate is on record only once its key is
        safely written (a valid certificate whose key was lost could only be revoked), and
        the files are taken back when the inventory or the audit log refuses it."""
        await self.audit.ensure_writable()
        written = write_issued(issued, out) if out is not None else []
        try:
            await self._inventory(issued)
        except BaseException:
            remove_written(written)
            raise
        return written

    async def _inventory(self, issued: IssuedCertificate) -> None:
        record = record_of(issued.certificate)
        await self.store.certificates.add(record, issued_at=self.clock())
        await self.audit.record(
            AuditType.CERTIFICATE_ISSUED,
            record.serial,
            routeringskenmerk=record.routeringskenmerk,
            result=record.role.value,
        )

    async def issue_client(
        self,
        *,
        routeringskenmerk: str,
        name: str,
        brin: str | None = None,
        csr_pem: bytes | None = None,
        days: int = 365,
        out: Path | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A registered endpoint's certificate; ``brin`` defaults to its school's."""
        issued = self.ca.issue_client_certificate(
            routeringskenmerk=routeringskenmerk,
            brin=await self.registered_school(routeringskenmerk, brin),
            name=name,
            csr_pem=csr_pem,
            days=days,
            not_before=not_before,
            not_after=not_after,
        )
        await self.record(issued, out)
        return issued

    async def registered_school(self, routeringskenmerk: str, brin: str | None) -> str:
        """The BRIN a certificate for this endpoint must carry: its registered school's. Rule 1
        at the source: a certificate naming an unregistered endpoint, or another school, would
        pass the handshake and then be refused (CertificaatInconsistent) at every call."""
        parse_routeringskenmerk(routeringskenmerk)
        if brin is not None:
            parse_brin(brin)
        endpoint = await self.store.registry.get_endpoint(routeringskenmerk)
        if endpoint is None:
            raise EndpointNotInRegistry(
                f"endpoint {routeringskenmerk} is not registered; run `traffic-center endpoint "
                "add` first"
            )
        if brin is not None and brin != endpoint.brin:
            raise EndpointNotInRegistry(
                f"endpoint {routeringskenmerk} belongs to school {endpoint.brin}, not {brin}"
            )
        return endpoint.brin

    async def issue_server(
        self,
        *,
        hosts: Sequence[str],
        csr_pem: bytes | None = None,
        days: int = 365,
        out: Path | None = None,
    ) -> IssuedCertificate:
        issued = self.ca.issue_server_certificate(hosts=hosts, csr_pem=csr_pem, days=days)
        await self.record(issued, out)
        return issued

    async def issue_relay(self, *, days: int = 365, out: Path | None = None) -> IssuedCertificate:
        """The Traffic Center's own client certificate, for calling LAS endpoints."""
        issued = self.ca.issue_relay_certificate(days=days)
        await self.record(issued, out)
        return issued

    async def issue_proxy(
        self, *, csr_pem: bytes | None = None, days: int = 365, out: Path | None = None
    ) -> IssuedCertificate:
        """A TLS-terminating proxy's client certificate, for forwarding schools' certificates."""
        issued = self.ca.issue_proxy_certificate(csr_pem=csr_pem, days=days)
        await self.record(issued, out)
        return issued

    async def revoke(self, serial: str, *, reason: str = "unspecified") -> CertificateRecord:
        """Revoke, and publish a CRL listing it in the same transaction: a revocation is
        never committed without a CRL that names it, however many run at once."""
        if reason not in REVOCATION_REASONS:
            raise InvalidValidity(
                f"unknown reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}"
            )
        serial = normalise_serial(serial)  # no serial at all: refused before any write
        await self.audit.ensure_writable()
        now = self.clock()
        revoked = await self.store.certificates.revoke(
            serial, reason=reason, at=now, publish=self._sign_crl
        )
        if revoked.revoked_at != now:  # revoked before (or by another at the same moment)
            _refuse_if_revoked(revoked)
        await self.audit.record(
            AuditType.CERTIFICATE_REVOKED,
            revoked.serial,
            routeringskenmerk=revoked.routeringskenmerk,
            result=reason,
        )
        return revoked

    async def list(self) -> list[ListedCertificate]:
        now = self.clock()
        return [
            ListedCertificate(record, record.status_at(now))
            for record in await self.store.certificates.list()
        ]

    async def write_crl(self, out: Path, *, days: int = DEFAULT_CRL_DAYS) -> int:
        """A fresh CRL to a file, and published to the nodes (GET /v1/crl)."""
        crl, count = await self.publish_crl(days=days)
        write_public(out, crl.public_bytes(serialization.Encoding.PEM))
        return count

    async def publish_crl(
        self, *, days: int = DEFAULT_CRL_DAYS
    ) -> tuple[x509.CertificateRevocationList, int]:
        """Sign a CRL of every revocation, current for ``days``, and hand it to the nodes
        through the store: they hold no CA key, so they serve the newest one published here
        until its nextUpdate, and `ca crl` must run again before then."""
        crl_lifetime(days)  # refused before anything is written

        def sign(revoked: Sequence[CertificateRecord], number: int) -> PublishedCrl:
            return self._sign_crl(revoked, number, days=days)

        published = await self.store.certificates.publish_crl(sign)
        crl = x509.load_der_x509_crl(published.der)
        return crl, len(crl)

    def _sign_crl(
        self,
        revoked: Sequence[CertificateRecord],
        number: int,
        *,
        days: int = DEFAULT_CRL_DAYS,
    ) -> PublishedCrl:
        """Called by the store inside the publication's transaction, under its lock."""
        crl = self.ca.build_crl(revoked, number=number, next_update_days=days)
        assert crl.next_update_utc is not None
        return PublishedCrl(
            der=crl.public_bytes(serialization.Encoding.DER),
            published_at=self.clock(),
            next_update=crl.next_update_utc,
        )


def _refuse_if_revoked(record: CertificateRecord) -> None:
    """A revocation stands as it was first made: a second one (another reason, say) would
    have left the inventory and the CRL with the first reason and the audit log with its own."""
    if record.revoked_at is not None:
        raise CertificateAlreadyRevoked(
            f"{record.serial} was revoked at {record.revoked_at.isoformat()} "
            f"({record.revocation_reason}); nothing changed",
            reason=record.revocation_reason,
        )
