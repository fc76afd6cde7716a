"""Sessions: creation with idempotency keys, and state transitions guarded in the database."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from traffic_center.domain.errors import IdempotencyKeyReused
from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.models import OPEN_STATES, Endpoint, School, Session, SessionState
from traffic_center.domain.results import ResultCode
from traffic_center.store.database import Database
from traffic_center.store.registry import endpoint_with_school_of, endpoint_with_school_query
from traffic_center.store.schema import sessions

# A session's columns only its open reads (``_by_idempotency_key``), not ``_session``.
_NOT_READ = frozenset({"idempotency_key", "request_fingerprint"})
# Ended sessions deleted per transaction by the purge (``purge_ended``).
PURGE_BATCH = 1000


class SessionRepository:
    def __init__(self, database: Database) -> None:
        self._db = database
        # The statements of every session's open and close, built once with bindparam()s:
        # an execution only fills in the values, and SQLAlchemy's compiled cache hits.
        # The insert takes its VALUES from the parameters' keys (every column's).
        self._insert = sessions.insert()
        by_id = sessions.c.sessie_id == bindparam("match_sessie_id")
        self._by_id = select(sessions).where(by_id)
        # A relay's session and the endpoint it names, in one statement (issue 14): the
        # endpoint is independent of the session, so it is joined in as a one-row subquery.
        named = endpoint_with_school_query().subquery("named_endpoint")
        read = [c for c in sessions.c if c.name not in _NOT_READ]
        # Its columns under names of their own: the session and the endpoint both have a
        # created_at, and rows are read by name (the store's fast path has names only).
        self._endpoint_labels = {c.name: f"named_{c.name}" for c in named.c}
        self._with_endpoint = (
            select(*read, *(c.label(self._endpoint_labels[c.name]) for c in named.c))
            .select_from(sessions.outerjoin(named, true()))
            .where(by_id)
        )
        # The same, beside the caller's own endpoint and school: a relay's identity check
        # and its session read are one statement (issue 14). No caller row, no row at all.
        caller = endpoint_with_school_query("match_caller").subquery("caller_endpoint")
        self._caller_labels = {c.name: f"caller_{c.name}" for c in caller.c}
        self._with_caller = select(
            *(c.label(self._caller_labels[c.name]) for c in caller.c),
            *read,
            *(c.label(self._endpoint_labels[c.name]) for c in named.c),
        ).select_from(caller.outerjoin(sessions, by_id).outerjoin(named, true()))
        self._by_idempotency = select(sessions).where(
            sessions.c.doel_routeringskenmerk == bindparam("match_doel"),
            sessions.c.idempotency_key == bindparam("match_key"),
        )
        self._transition = (
            update(sessions)
            .where(
                sessions.c.sessie_id == bindparam("match_sessie_id"),
                sessions.c.state.in_([s.value for s in OPEN_STATES]),
            )
            .values(
                state=bindparam("new_state"),
                closed_at=bindparam("new_closed_at"),
                result=bindparam("new_result"),
                result_routeringskenmerk=bindparam("new_result_routeringskenmerk"),
            )
        )

    async def create(
        self, session: Session, *, idempotency_key: str | None, fingerprint: str
    ) -> tuple[Session, bool]:
        """Insert the session, or return the one created before with the same key.

        The unique constraint on (doel endpoint, key) decides races between nodes: the loser
        of a concurrent insert reads the winner's session.
        """
        if idempotency_key is not None:
            earlier = await self._by_idempotency_key(session, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier, False
        try:
            async with self._db.transaction(single_statement=True) as conn:
                await conn.execute(
                    self._insert,
                    {
                        **_columns(session),
                        "idempotency_key": idempotency_key,
                        "request_fingerprint": fingerprint,
                    },
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            earlier = await self._by_idempotency_key(session, idempotency_key, fingerprint)
            if earlier is None:
                raise
            return earlier, False
        return session, True

    async def get(self, sessie_id: str) -> Session | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._by_id, {"match_sessie_id": sessie_id})).first()
        return _session(row._mapping) if row else None

    async def get_with_endpoint(
        self, sessie_id: str, routeringskenmerk: str
    ) -> tuple[Session | None, tuple[Endpoint, School] | None]:
        """The session and the endpoint ``routeringskenmerk`` with its school, in one read
        (each None where there is none; without the session the endpoint is not looked up).
        Read now, never cached: a deactivation counts at once."""
        values = {"match_sessie_id": sessie_id, "match_routeringskenmerk": routeringskenmerk}
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._with_endpoint, values)).first()
        if row is None:
            return None, None
        return self._session_and_named(row._mapping)

    async def with_caller(
        self, caller_routeringskenmerk: str, sessie_id: str, routeringskenmerk: str
    ) -> tuple[tuple[Endpoint, School] | None, Session | None, tuple[Endpoint, School] | None]:
        """The caller's endpoint with its school, and ``get_with_endpoint``'s session and
        named endpoint, in one read (issue 14); without the caller's endpoint nothing else
        is looked up. Read now, never cached: a deactivation counts at once."""
        values = {
            "match_caller": caller_routeringskenmerk,
            "match_sessie_id": sessie_id,
            "match_routeringskenmerk": routeringskenmerk,
        }
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._with_caller, values)).first()
        if row is None:
            return None, None, None
        mapping = row._mapping
        caller = endpoint_with_school_of(_labelled(mapping, self._caller_labels))
        if mapping["sessie_id"] is None:
            return caller, None, None
        return caller, *self._session_and_named(mapping)

    def _session_and_named(self, mapping: Any) -> tuple[Session, tuple[Endpoint, School] | None]:
        """A row's session, and the endpoint it names with its school (None: no such one)."""
        labels = self._endpoint_labels
        if mapping[labels["routeringskenmerk"]] is None:
            return _session(mapping), None
        return _session(mapping), endpoint_with_school_of(_labelled(mapping, labels))

    async def transition(self, session: Session) -> bool:
        """Store the new state only if the stored one is still open; False if it was not."""
        async with self._db.transaction(single_statement=True) as conn:
            result = await conn.execute(
                self._transition,
                {
                    "match_sessie_id": session.sessie_id,
                    "new_state": session.state.value,
                    "new_closed_at": session.closed_at,
                    "new_result": session.result.value if session.result else None,
                    "new_result_routeringskenmerk": session.result_routeringskenmerk,
                },
            )
        return bool(result.rowcount)

    async def involving(self, routeringskenmerk: str) -> Sequence[Session]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(
                select(sessions)
                .where(
                    or_(
                        sessions.c.doel_routeringskenmerk == routeringskenmerk,
                        sessions.c.bron_routeringskenmerk == routeringskenmerk,
                    )
                )
                .order_by(sessions.c.created_at)
            )
            return [_session(row._mapping) for row in rows]

    async def purge_ended(self, *, ended_before: dt.datetime) -> int:
        """Delete sessions closed, or expired, before the moment; how many. Audit records
        keep their sessie_id: they are the lasting account, the session row is not.

        In batches, each its own transaction, the event loop let go between them: the first
        purge after an upgrade, or after a busy summer, may find a hundred thousand rows, and
        one DELETE of them all held SQLite's write lock and its event loop (a SQLite
        transaction never yields: 1.4 s for 100,000 rows) or outlasted PostgreSQL's
        statement timeout."""
        ended = or_(
            and_(sessions.c.closed_at.is_not(None), sessions.c.closed_at < ended_before),
            sessions.c.expires_at < ended_before,
        )
        batch = (
            delete(sessions)
            .where(
                sessions.c.sessie_id.in_(
                    select(sessions.c.sessie_id).where(ended).limit(PURGE_BATCH).scalar_subquery()
                )
            )
            .execution_options(synchronize_session=False)
        )
        purged = 0
        while True:
            async with self._db.transaction() as conn:
                deleted = int((await conn.execute(batch)).rowcount or 0)
            purged += deleted
            if deleted < PURGE_BATCH:
                return purged
            await asyncio.sleep(0)  # the requests waiting on this node go first

    async def count(self) -> int:
        async with self._db.transaction(read_only=True) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(sessions))).scalar_one()
            )

    async def open_count(self, now: dt.datetime) -> int:
        """Sessions still open and not expired (the ops listener's gauge): a scan of the
        table (an index for it would cost every session's writes), off the event loop."""
        return int(await self._db.scan_for_scalar(open_sessions_counted(now)))

    async def _by_idempotency_key(
        self, session: Session, key: str, fingerprint: str
    ) -> Session | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    self._by_idempotency,
                    {"match_doel": session.doel_routeringskenmerk, "match_key": key},
                )
            ).first()
        if row is None:
            return None
        if row._mapping["request_fingerprint"] != fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another request")
        return _session(row._mapping)


def _columns(session: Session) -> dict[str, Any]:
    return {
        "sessie_id": session.sessie_id,
        "doel_brin": session.doel_brin,
        "doel_routeringskenmerk": session.doel_routeringskenmerk,
        "doel_sector": session.doel_sector.value,
        "bron_brin": session.bron_brin,
        "bron_routeringskenmerk": session.bron_routeringskenmerk,
        "overdrachtsoort": session.overdrachtsoort.value,
        "search_key_hmac": session.search_key_hmac,
        "state": session.state.value,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "closed_at": session.closed_at,
        "result": session.result.value if session.result else None,
        "result_routeringskenmerk": session.result_routeringskenmerk,
    }


def _labelled(row: Any, labels: dict[str, str]) -> dict[str, Any]:
    """One joined part of a row, under its own column names."""
    return {name: row[label] for name, label in labels.items()}


def _session(row: Any) -> Session:
    return Session(
        sessie_id=row["sessie_id"],
        doel_brin=row["doel_brin"],
        doel_routeringskenmerk=row["doel_routeringskenmerk"],
        doel_sector=Sector(row["doel_sector"]),
        bron_brin=row["bron_brin"],
        bron_routeringskenmerk=row["bron_routeringskenmerk"],
        overdrachtsoort=Overdrachtsoort(row["overdrachtsoort"]),
        search_key_hmac=row["search_key_hmac"],
        state=SessionState(row["state"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        closed_at=row["closed_at"],
        result=ResultCode(row["result"]) if row["result"] else None,
        result_routeringskenmerk=row["result_routeringskenmerk"],
    )


def open_sessions_counted(now: dt.datetime) -> Select[int]:
    """The count of sessions open and not expired at ``now``."""
    return (
        select(func.count())
        .select_from(sessions)
        .where(
            sessions.c.state.in_([state.value for state in OPEN_STATES]),
            sessions.c.expires_at > now,
        )
    )
