"""Rate-limit counters kept in the store, so every node counts the same hits.

One row per bucket and fixed window; a check reads the current and the previous window, which
is all a sliding-window estimate needs (``broker/rate_limits.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from traffic_center.store.database import Database, StoreConnection
from traffic_center.store.schema import audit_head, rate_limits


class WindowHits(NamedTuple):
    """Hits in the current window (this one included) and in the one before it."""

    current: int
    previous: int


class Hit(NamedTuple):
    """One hit to count: the bucket, and the fixed window it falls in."""

    bucket: str
    window_start: int
    window_seconds: int


class RateLimitRepository:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Built once, with bindparam()s for the values: each hit only fills them in, and
        # SQLAlchemy's compiled cache hits (constructing the statements was a tenth of a
        # session's CPU, issue 14).
        insert = postgresql_insert if database.dialect == "postgresql" else sqlite_insert
        bucket = rate_limits.c.bucket == bindparam("match_bucket")
        # The previous window's hits come back with the count: one statement, and on
        # PostgreSQL one round trip, for both (both dialects allow a subquery in RETURNING).
        earlier = rate_limits.alias("earlier")
        previous_hits = (
            select(earlier.c.hits)
            .where(
                earlier.c.bucket == bindparam("match_bucket"),
                earlier.c.window_start == bindparam("previous_window"),
            )
            .scalar_subquery()
            .label("previous_hits")
        )
        self._count_hit = (
            insert(rate_limits)
            .values(bucket=bindparam("match_bucket"), window_start=bindparam("window"), hits=1)
            .on_conflict_do_update(
                index_elements=[rate_limits.c.bucket, rate_limits.c.window_start],
                set_={"hits": rate_limits.c.hits + 1},
            )
            .returning(rate_limits.c.hits, previous_hits)
        )
        # The same with the audit chain's signing key beside the count: an exchange's
        # admission is then one statement (``Store.count_and_probe``).
        signing_key = (
            select(audit_head.c.key_id)
            .where(audit_head.c.id == 1)
            .scalar_subquery()
            .label("signing_key")
        )
        self._count_hit_and_key = self._count_hit.returning(signing_key)
        self._forget_older = delete(rate_limits).where(
            bucket, rate_limits.c.window_start < bindparam("previous_window")
        )

    async def hit(self, bucket: str, *, window_start: int, window_seconds: int = 60) -> WindowHits:
        """Count one hit in the window; one write, in one transaction with the read."""
        async with self._db.transaction() as conn:
            return await self.count_in(conn, Hit(bucket, window_start, window_seconds))

    async def count_with_signing_key(self, hit: Hit) -> tuple[WindowHits, str | None]:
        """Count one hit, and read the audit chain's signing key, in one statement: its own
        transaction (on PostgreSQL one round trip). A new window's clean-up follows in a
        transaction of its own: it is housekeeping, not part of the count."""
        values = _values(hit)
        async with self._db.transaction(single_statement=True) as conn:
            counted = (await conn.execute(self._count_hit_and_key, values)).one()
        hits = _window_hits(counted)
        if hits.current == 1:
            async with self._db.transaction(single_statement=True) as conn:
                await conn.execute(self._forget_older, values)
        return hits, counted.signing_key

    async def count_in(self, conn: StoreConnection, hit: Hit) -> WindowHits:
        """Count ``hit`` inside the caller's write transaction (``Store.count_and_start``)."""
        values = _values(hit)
        hits = _window_hits((await conn.execute(self._count_hit, values)).one())
        if hits.current == 1:
            # A new window: forget all but the previous one so the table stays small.
            await conn.execute(self._forget_older, values)
        return hits


def _values(hit: Hit) -> dict[str, Any]:
    return {
        "match_bucket": hit.bucket,
        "window": hit.window_start,
        "previous_window": hit.window_start - hit.window_seconds,
    }


def _window_hits(counted: Any) -> WindowHits:
    """The count statement's row: this window's hits and the previous window's (if any)."""
    return WindowHits(int(counted.hits), int(counted.previous_hits or 0))
