"""The Store: one database and the repositories over it."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from traffic_center.domain.audit import AuditRecord
from traffic_center.store.audit import AuditRepository
from traffic_center.store.certificates import CertificateRepository
from traffic_center.store.database import (
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    STATEMENT_TIMEOUT_SECONDS,
    Database,
    open_database,
)
from traffic_center.store.rate_limits import Hit, RateLimitRepository, WindowHits
from traffic_center.store.registry import RegistryRepository
from traffic_center.store.sessions import SessionRepository
from traffic_center.store.swv_links import SwvLinkRepository


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.certificates = CertificateRepository(database)
        self.registry = RegistryRepository(database)
        self.sessions = SessionRepository(database)
        self.rate_limits = RateLimitRepository(database)
        self.audit = AuditRepository(database)
        self.swv_links = SwvLinkRepository(database)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_overflow: int = DEFAULT_MAX_OVERFLOW,
        statement_timeout_seconds: float | None = STATEMENT_TIMEOUT_SECONDS,
    ) -> Store:
        store = cls(
            open_database(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                statement_timeout_seconds=statement_timeout_seconds,
            )
        )
        if migrate:
            try:
                await store.database.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    async def count_and_probe(self, hit: Hit, *, secret: bytes | None) -> WindowHits:
        """An exchange's admission in one statement: its rate-limit hit counted, which proves
        the store writable now (fail closed), and with a secret the chain's signing key
        checked. Two transactions were a third of a session's store time; the one statement
        is one round trip on PostgreSQL where BEGIN, two statements and COMMIT were four
        (issue 14)."""
        hits, signing_key = await self.rate_limits.count_with_signing_key(hit)
        if secret is not None:
            self.audit.ensure_signing_key(signing_key, secret=secret)
        return hits

    async def count_and_start(
        self,
        hit: Hit,
        started: AuditRecord,
        *,
        secret: bytes,
        admits: Callable[[WindowHits], bool],
    ) -> WindowHits | None:
        """A relayed exchange's rate-limit hit and its started record in one write transaction
        (issue 14): the hit is counted, and the record appended only if ``admits`` the hits.
        The record is the fail-closed proof, so no probe is needed. A failure undoes both.

        None: the record was in the log already (a retry after a commit whose answer was
        lost), so that commit counted the hit and admitted the exchange."""
        try:
            async with self.database.transaction() as conn:
                hits = await self.rate_limits.count_in(conn, hit)
                if admits(hits):
                    await self.audit.append_in(conn, started, secret=secret)
        except IntegrityError:
            if not await self.audit.holds(started):
                raise
            return None
        return hits

    async def close(self) -> None:
        await self.database.dispose()
