"""Fixed-window rate-limit counters kept in the store, so every node counts the same hits."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from traffic_center.store.database import Database
from traffic_center.store.schema import rate_limits


class RateLimitRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def hit(self, bucket: str, *, window_start: int) -> int:
        """Count one hit in the window and return the hits so far, this one included."""
        insert = postgresql_insert if self._db.dialect == "postgresql" else sqlite_insert
        statement = (
            insert(rate_limits)
            .values(bucket=bucket, window_start=window_start, hits=1)
            .on_conflict_do_update(
                index_elements=[rate_limits.c.bucket, rate_limits.c.window_start],
                set_={"hits": rate_limits.c.hits + 1},
            )
            .returning(rate_limits.c.hits)
        )
        async with self._db.transaction() as conn:
            hits = int((await conn.execute(statement)).scalar_one())
            if hits == 1:
                # A new window: forget the old ones so the table stays small.
                await conn.execute(
                    delete(rate_limits).where(
                        rate_limits.c.bucket == bucket, rate_limits.c.window_start < window_start
                    )
                )
        return hits
