"""The SWV flow's triples: recorded when a school notifies its SWV, read by the broker."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from traffic_center.domain.models import SwvLink
from traffic_center.store.database import Database
from traffic_center.store.schema import swv_links


class SwvLinkRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, link: SwvLink) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                swv_links.insert().values(
                    koppelsleutel_hmac=link.koppelsleutel_hmac,
                    school_brin=link.school_brin,
                    school_routeringskenmerk=link.school_routeringskenmerk,
                    swv_brin=link.swv_brin,
                    swv_routeringskenmerk=link.swv_routeringskenmerk,
                    created_at=link.created_at,
                    feedback_at=link.feedback_at,
                )
            )

    async def get(self, koppelsleutel_hmac: str) -> SwvLink | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(swv_links).where(swv_links.c.koppelsleutel_hmac == koppelsleutel_hmac)
                )
            ).first()
        return _link(row._mapping) if row else None

    async def claim_feedback(self, koppelsleutel_hmac: str, *, at: dt.datetime) -> bool:
        """Mark the feedback as given, unless it was: the database decides races between
        nodes, so the feedback goes once."""
        async with self._db.transaction() as conn:
            result = await conn.execute(
                update(swv_links)
                .where(
                    swv_links.c.koppelsleutel_hmac == koppelsleutel_hmac,
                    swv_links.c.feedback_at.is_(None),
                )
                .values(feedback_at=at)
            )
        return bool(result.rowcount)

    async def release_feedback(self, koppelsleutel_hmac: str, *, claimed_at: dt.datetime) -> None:
        """The feedback did not reach the school: the SWV may send it again."""
        async with self._db.transaction() as conn:
            await conn.execute(
                update(swv_links)
                .where(
                    swv_links.c.koppelsleutel_hmac == koppelsleutel_hmac,
                    swv_links.c.feedback_at == claimed_at,
                )
                .values(feedback_at=None)
            )


def _link(row: Any) -> SwvLink:
    return SwvLink(
        koppelsleutel_hmac=str(row["koppelsleutel_hmac"]),
        school_brin=str(row["school_brin"]),
        school_routeringskenmerk=str(row["school_routeringskenmerk"]),
        swv_brin=str(row["swv_brin"]),
        swv_routeringskenmerk=str(row["swv_routeringskenmerk"]),
        created_at=row["created_at"],
        feedback_at=row["feedback_at"],
    )
