"""Exchange records: appended once an exchange's outcome is known, read back by tests and audit."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from traffic_center.domain.exchanges import ExchangeRecord, ExchangeType
from traffic_center.store.database import Database
from traffic_center.store.schema import exchanges


class ExchangeRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def append(self, record: ExchangeRecord) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(exchanges.insert().values(**_columns(record)))

    async def by_transaction(self, transaction_id: str) -> ExchangeRecord | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(exchanges).where(exchanges.c.transaction_id == transaction_id)
                )
            ).first()
        return _record(row._mapping) if row else None

    async def for_session(self, sessie_id: str) -> Sequence[ExchangeRecord]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(
                select(exchanges).where(exchanges.c.sessie_id == sessie_id).order_by(exchanges.c.id)
            )
            return [_record(row._mapping) for row in rows]


def _columns(record: ExchangeRecord) -> dict[str, Any]:
    columns = dataclasses.asdict(record)
    columns["type"] = record.type.value
    return columns


def _record(row: Any) -> ExchangeRecord:
    names = {field.name for field in dataclasses.fields(ExchangeRecord)}
    values = {name: row[name] for name in names}
    values["type"] = ExchangeType(row["type"])
    return ExchangeRecord(**values)
