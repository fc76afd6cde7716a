"""Ended sessions leave the store TC_SESSION_RETENTION_DAYS after they ended; audit stays."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.support.builders import granted_session
from traffic_center.broker.retention import SessionRetention
from traffic_center.domain.audit import AuditRecord, AuditType
from traffic_center.domain.results import ResultCode
from traffic_center.domain.sessions import close
from traffic_center.store import sessions as sessions_store
from traffic_center.store.store import Store

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
RETENTION = dt.timedelta(days=30)
SECRET = b"k" * 32


async def session_at(store: Store, created: dt.datetime, *, closed: dt.datetime | None) -> str:
    session = granted_session(created)
    await store.sessions.create(session, idempotency_key=None, fingerprint="x")
    if closed is not None:
        ended = close(
            session, result=ResultCode.GEEN_INZAGE, routeringskenmerk="2" * 20, now=closed
        )
        assert await store.sessions.transition(ended)
    return session.sessie_id


async def test_sessions_ended_before_the_retention_period_are_purged(store: Store) -> None:
    long_ago = NOW - RETENTION - dt.timedelta(days=2)
    closed_long_ago = await session_at(store, long_ago, closed=long_ago + dt.timedelta(minutes=5))
    expired_long_ago = await session_at(store, long_ago, closed=None)
    closed_lately = await session_at(
        store, NOW - dt.timedelta(days=3), closed=NOW - dt.timedelta(days=3)
    )
    # Created before the period, but expired (TTL one hour) within it: kept.
    expired_lately = await session_at(
        store, NOW - RETENTION - dt.timedelta(minutes=30), closed=None
    )
    still_open = await session_at(store, NOW, closed=None)
    record = AuditRecord(
        type=AuditType.CLOSE,
        transaction_id="t-1",
        recorded_at=long_ago,
        result="GeenInzage",
        sessie_id=closed_long_ago,
    )
    await store.audit.append(record, secret=SECRET)
    audit_before = (await store.audit.head()).count

    retention = SessionRetention(store, retention=RETENTION, clock=lambda: NOW)
    assert await retention.purge() == 2

    assert await store.sessions.get(closed_long_ago) is None
    assert await store.sessions.get(expired_long_ago) is None
    for kept in (closed_lately, expired_lately, still_open):
        assert await store.sessions.get(kept) is not None
    assert (await store.audit.head()).count == audit_before  # never an audit record


async def test_a_large_purge_goes_in_batches_of_its_own_transactions(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many sessions ended long ago (the first purge after a busy summer), no one
    transaction deletes more than a batch: SQLite's write lock and PostgreSQL's statement
    timeout see a batch at a time."""
    monkeypatch.setattr(sessions_store, "PURGE_BATCH", 2)
    long_ago = NOW - RETENTION - dt.timedelta(days=2)
    for _ in range(5):
        await session_at(store, long_ago, closed=None)
    kept = await session_at(store, NOW, closed=None)
    writes: list[str] = []
    store.database.observe = lambda kind, _seconds: writes.append(kind)
    retention = SessionRetention(store, retention=RETENTION, clock=lambda: NOW)
    turns = 0

    async def another_request() -> None:  # what else the node's event loop has to do
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(another_request())
    try:
        assert await retention.purge() == 5
    finally:
        beside.cancel()
    assert writes.count("write") == 3  # 2, 2 and the last 1
    # The loop was let go between batches (a SQLite transaction itself never yields).
    assert turns >= 2
    assert await store.sessions.count() == 1
    assert await store.sessions.get(kept) is not None


async def test_the_node_purges_now_and_then_not_on_every_heartbeat(store: Store) -> None:
    ticks = iter([0.0, 10.0, 3599.0, 3601.0])
    old = NOW - RETENTION - dt.timedelta(days=1)
    retention = SessionRetention(
        store, retention=RETENTION, clock=lambda: NOW, monotonic=lambda: next(ticks)
    )
    await session_at(store, old, closed=old)
    assert await retention.purge_now_and_then() == 1  # the first beat purges
    await session_at(store, old, closed=old)
    assert await retention.purge_now_and_then() == 0  # 10 s later: not yet
    assert await retention.purge_now_and_then() == 0
    assert await retention.purge_now_and_then() == 1  # an hour on
