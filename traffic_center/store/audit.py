"""The audit log in the store: chained appends under the head's lock, reads for verify and API."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from traffic_center.domain.audit import AuditRecord, AuditType, ChainedRecord, chain_hash
from traffic_center.store.database import Database
from traffic_center.store.schema import audit_head, audit_records

_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(AuditRecord))
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ChainHead:
    last_id: int
    last_hash: str
    count: int


class AuditRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def append(self, record: AuditRecord, *, secret: bytes) -> None:
        """Add the record at the end of the chain; one writer at a time holds the head.

        Idempotent: a retry after a commit whose answer was lost finds the record in place.
        """
        try:
            await self._append(record, secret)
        except IntegrityError:
            if await self.by_transaction(record.transaction_id) is None:
                raise

    async def _append(self, record: AuditRecord, secret: bytes) -> None:
        async with self._db.transaction() as conn:
            # FOR UPDATE on PostgreSQL; on SQLite the IMMEDIATE transaction already excludes
            # every other writer.
            head = (
                await conn.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update())
            ).one()
            record_hash = chain_hash(secret, head.last_hash, record)
            inserted = await conn.execute(
                audit_records.insert()
                .values(**_columns(record), prev_hash=head.last_hash, hash=record_hash)
                .returning(audit_records.c.id)
            )
            record_id = int(inserted.scalar_one())
            await conn.execute(
                update(audit_head)
                .where(audit_head.c.id == 1)
                .values(last_id=record_id, last_hash=record_hash, count=audit_head.c.count + 1)
            )

    async def probe_write(self, now: dt.datetime) -> None:
        """Prove the log can be written right now (fail closed), without adding a record."""
        async with self._db.transaction() as conn:
            await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(probed_at=now))

    async def head(self) -> ChainHead:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).one()
        values = row._mapping
        return ChainHead(int(values["last_id"]), str(values["last_hash"]), int(values["count"]))

    async def walk(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        up_to_id: int | None = None,
    ) -> AsyncIterator[ChainedRecord]:
        """Every record in chain order, read in batches (the log may be large)."""
        after = 0
        while True:
            query = select(audit_records).where(audit_records.c.id > after)
            if up_to_id is not None:
                query = query.where(audit_records.c.id <= up_to_id)
            if since is not None:
                query = query.where(audit_records.c.recorded_at >= since)
            if until is not None:
                query = query.where(audit_records.c.recorded_at < until)
            async with self._db.transaction(read_only=True) as conn:
                rows = list(await conn.execute(query.order_by(audit_records.c.id).limit(_BATCH)))
            for row in rows:
                yield _chained(row._mapping)
            if len(rows) < _BATCH:
                return
            after = int(rows[-1].id)

    async def by_transaction(self, transaction_id: str) -> AuditRecord | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(audit_records).where(audit_records.c.transaction_id == transaction_id)
                )
            ).first()
        return _record(row._mapping) if row else None

    async def for_session(self, sessie_id: str) -> Sequence[AuditRecord]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(
                select(audit_records)
                .where(audit_records.c.sessie_id == sessie_id)
                .order_by(audit_records.c.id)
            )
            return [_record(row._mapping) for row in rows]

    async def for_party(
        self,
        routeringskenmerk: str,
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
        after_id: int,
        limit: int,
    ) -> Sequence[ChainedRecord]:
        """Records where the endpoint is doel or bron, oldest first, after a cursor."""
        conditions = [
            audit_records.c.id > after_id,
            or_(
                audit_records.c.doel_routeringskenmerk == routeringskenmerk,
                audit_records.c.bron_routeringskenmerk == routeringskenmerk,
            ),
        ]
        if since is not None:
            conditions.append(audit_records.c.recorded_at >= since)
        if until is not None:
            conditions.append(audit_records.c.recorded_at < until)
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(
                select(audit_records)
                .where(and_(*conditions))
                .order_by(audit_records.c.id)
                .limit(limit)
            )
            return [_chained(row._mapping) for row in rows]

    async def count(self) -> int:
        async with self._db.transaction(read_only=True) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(audit_records))).scalar_one()
            )


def _columns(record: AuditRecord) -> dict[str, Any]:
    columns = {name: getattr(record, name) for name in _RECORD_FIELDS}
    columns["type"] = record.type.value
    return columns


def _record(row: Any) -> AuditRecord:
    values = {name: row[name] for name in _RECORD_FIELDS}
    values["type"] = AuditType(row["type"])
    return AuditRecord(**values)


def _chained(row: Any) -> ChainedRecord:
    return ChainedRecord(int(row["id"]), _record(row), str(row["prev_hash"]), str(row["hash"]))
