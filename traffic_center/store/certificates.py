"""The certificate inventory: every certificate the CA issued, and its revocation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update

from traffic_center.domain.errors import CertificateNotFound
from traffic_center.domain.models import CertificateRecord, CertificateRole
from traffic_center.store.database import Database, StoreConnection
from traffic_center.store.schema import certificates, crls


@dataclass(frozen=True, slots=True)
class PublishedCrl:
    der: bytes
    published_at: dt.datetime
    next_update: dt.datetime


# Signs the CRL the store publishes next: every revoked certificate, and the CRL's number
# (RFC 5280 §5.2.3: monotonically increasing), both read under the publication lock.
CrlSigner = Callable[[Sequence[CertificateRecord], int], PublishedCrl]

# One CRL publication at a time across every process on PostgreSQL (pg_advisory_xact_lock,
# held until the transaction ends). SQLite needs none: a write transaction there begins
# IMMEDIATE and so already excludes every other writer.
CRL_LOCK_KEY = 0x4F534F43524C  # "OSOCRL"


class CertificateRepository:
    def __init__(self, database: Database) -> None:
        self._db = database
        # The authenticator's read, built once with a bindparam(): an execution only fills
        # in the serial, and SQLAlchemy's compiled cache hits.
        self._by_serial = select(certificates).where(
            certificates.c.serial == bindparam("match_serial")
        )
        self._soonest_expiry = select(func.min(certificates.c.not_after)).where(
            certificates.c.revoked_at.is_(None),
            certificates.c.not_after > bindparam("now", type_=certificates.c.not_after.type),
        )
        self._newest_next_update = select(crls.c.next_update).order_by(crls.c.id.desc()).limit(1)
        self._lock_crls = select(func.pg_advisory_xact_lock(CRL_LOCK_KEY))
        self._last_crl_number = select(func.max(crls.c.id))
        self._revoked = (
            select(certificates)
            .where(certificates.c.revoked_at.is_not(None))
            .order_by(certificates.c.issued_at)
        )

    async def add(self, record: CertificateRecord, *, issued_at: dt.datetime) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                certificates.insert().values(
                    serial=record.serial,
                    role=record.role.value,
                    routeringskenmerk=record.routeringskenmerk,
                    subject=record.subject,
                    not_before=record.not_before,
                    not_after=record.not_after,
                    issued_at=issued_at,
                )
            )

    async def get(self, serial: str) -> CertificateRecord | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._by_serial, {"match_serial": serial})).first()
        return _record(row._mapping) if row else None

    async def list(self) -> Sequence[CertificateRecord]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(select(certificates).order_by(certificates.c.issued_at))
            return [_record(row._mapping) for row in rows]

    async def revoke(
        self, serial: str, *, reason: str, at: dt.datetime, publish: CrlSigner | None = None
    ) -> CertificateRecord:
        """Revoke once; revoking again keeps the first time and reason (the record returned
        then has its first ``revoked_at``, not ``at``). With ``publish``, a CRL listing it is
        published in the same transaction: the revocation and its CRL commit together, or
        neither does; a revocation that changed nothing publishes nothing."""
        async with self._db.transaction() as conn:
            if publish is not None:
                await self._serialise_publications(conn)
            updated = await conn.execute(
                update(certificates)
                .where(certificates.c.serial == serial, certificates.c.revoked_at.is_(None))
                .values(revoked_at=at, revocation_reason=reason)
            )
            row = (
                await conn.execute(select(certificates).where(certificates.c.serial == serial))
            ).first()
            if row is None:
                raise CertificateNotFound(f"no certificate with serial {serial}")
            if publish is not None and updated.rowcount:
                await self._publish(conn, publish)
        return _record(row._mapping)

    async def publish_crl(self, sign: CrlSigner) -> PublishedCrl:
        """Sign a CRL of every revocation and publish it, one publication at a time.

        Reading the revoked certificates, signing and inserting is one transaction that
        waits for every other publication (and revocation) to end: two publications
        interleaved could otherwise let the later row be the one signed over the older,
        shorter list, and every node would serve a CRL missing a revocation."""
        async with self._db.transaction() as conn:
            await self._serialise_publications(conn)
            return await self._publish(conn, sign)

    async def _serialise_publications(self, conn: StoreConnection) -> None:
        if self._db.dialect == "postgresql":
            await conn.execute(self._lock_crls)

    async def _publish(self, conn: StoreConnection, sign: CrlSigner) -> PublishedCrl:
        """Under the lock: every committed revocation is visible here (PostgreSQL's READ
        COMMITTED reads each statement on a fresh snapshot). The CRL's number is its row's
        id, chosen here rather than by the sequence: it must be signed into the CRL first."""
        revoked = [_record(row._mapping) for row in await conn.execute(self._revoked)]
        number = ((await conn.execute(self._last_crl_number)).scalar() or 0) + 1
        crl = sign(revoked, number)
        await conn.execute(
            crls.insert().values(
                id=number, der=crl.der, published_at=crl.published_at, next_update=crl.next_update
            )
        )
        return crl

    async def latest_crl(self) -> PublishedCrl | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(select(crls).order_by(crls.c.id.desc()).limit(1))).first()
        if row is None:
            return None
        values = row._mapping
        return PublishedCrl(bytes(values["der"]), values["published_at"], values["next_update"])

    async def crl_next_update(self) -> dt.datetime | None:
        """The nextUpdate of the CRL every node serves (the newest), read off the event loop
        as the other gauges' reads are; None before any CRL is published."""
        next_update: dt.datetime | None = await self._db.scan_for_scalar(self._newest_next_update)
        return next_update

    async def soonest_expiry(self, now: dt.datetime) -> dt.datetime | None:
        """The earliest not-after among valid client and server certificates.

        The database's minimum, off the event loop: the inventory keeps every certificate
        ever issued, and reading it whole into records took 160-250 ms of the loop at
        10,000 certificates, each time the ops listener's gauges were read."""
        soonest: dt.datetime | None = await self._db.scan_for_scalar(
            self._soonest_expiry, {"now": now}
        )
        return soonest


def _record(row: Any) -> CertificateRecord:
    return CertificateRecord(
        serial=row["serial"],
        role=CertificateRole(row["role"]),
        routeringskenmerk=row["routeringskenmerk"],
        subject=row["subject"],
        not_before=row["not_before"],
        not_after=row["not_after"],
        revoked_at=row["revoked_at"],
        revocation_reason=row["revocation_reason"],
    )
