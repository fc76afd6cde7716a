"""The store on both backends: migrations match the schema; guarded transitions."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import threading
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import AsyncAdaptedQueuePool

from tests.conftest import DatabaseFactory
from tests.support.builders import granted_session
from tests.support.postgres import PostgresServer
from tests.test_audit_optimistic import KEY, a_record
from traffic_center.admin.store import open_store
from traffic_center.audit.verify import verify_chain
from traffic_center.domain.errors import StoreUnavailable
from traffic_center.domain.identifiers import EndpointKind, Sector
from traffic_center.domain.models import CertificateRecord, CertificateRole, Endpoint, School
from traffic_center.domain.results import ResultCode
from traffic_center.domain.sessions import close
from traffic_center.settings import Settings
from traffic_center.store.database import SqliteDatabase
from traffic_center.store.migrate import alembic_config, current_revision
from traffic_center.store.rate_limits import Hit, WindowHits
from traffic_center.store.schema import metadata
from traffic_center.store.store import Store


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrations_create_exactly_the_declared_schema(store: Store) -> None:
    async with store.database.transaction(read_only=True) as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), metadata)
        )
        revision = await conn.run_sync(current_revision)
    assert diff == []
    assert revision == head_revision()


async def test_migrating_twice_is_harmless(store: Store) -> None:
    await store.database.migrate()
    await store.database.migrate()
    assert await store.sessions.count() == 0


async def test_a_closed_session_cannot_be_closed_again_by_another_node(store: Store) -> None:
    session = granted_session(dt.datetime.now(dt.UTC))
    await store.sessions.create(session, idempotency_key=None, fingerprint="x")
    first = close(
        session,
        result=ResultCode.OVERDRACHT_GESLAAGD,
        routeringskenmerk="2" * 20,
        now=dt.datetime.now(dt.UTC),
    )
    second = close(
        session,
        result=ResultCode.GEEN_INZAGE,
        routeringskenmerk="2" * 20,
        now=dt.datetime.now(dt.UTC),
    )
    assert await store.sessions.transition(first) is True
    assert await store.sessions.transition(second) is False
    stored = await store.sessions.get(session.sessie_id)
    assert stored is not None
    assert stored.result is ResultCode.OVERDRACHT_GESLAAGD
    assert stored.expires_at.tzinfo is not None


async def test_a_relay_s_caller_session_and_endpoint_are_one_read(store: Store) -> None:
    """The caller's endpoint and school, the session and the endpoint it names: each None
    where the store holds none, and nothing but the caller's without the caller's."""
    now = dt.datetime.now(dt.UTC)
    doel, bron = "1" * 20, "3" * 20
    await store.registry.add_school(School("12AB", "Doel", Sector.VO, None, True), at=now)
    await store.registry.add_school(School("34CD", "Bron", Sector.PO, None, False), at=now)
    await store.registry.add_endpoint(
        Endpoint(doel, "12AB", "https://doel.example", EndpointKind.OV, True), at=now
    )
    await store.registry.add_endpoint(
        Endpoint(bron, "34CD", "https://bron.example", EndpointKind.OV, True), at=now
    )
    session = granted_session(now)
    await store.sessions.create(session, idempotency_key=None, fingerprint="x")

    caller, found, named = await store.sessions.with_caller(doel, session.sessie_id, bron)
    assert caller is not None
    assert found is not None
    assert named is not None
    assert (caller[0].routeringskenmerk, caller[1].brin, caller[1].active) == (doel, "12AB", True)
    assert found == await store.sessions.get(session.sessie_id)
    assert (named[0].url, named[1].brin, named[1].active) == ("https://bron.example", "34CD", False)
    assert await store.sessions.with_caller(doel, session.sessie_id, "9" * 20) == (
        caller,
        found,
        None,
    )
    assert await store.sessions.with_caller(doel, str(uuid.uuid4()), bron) == (caller, None, None)
    assert await store.sessions.with_caller(bron, session.sessie_id, doel) == (named, found, caller)
    assert await store.sessions.with_caller("9" * 20, session.sessie_id, bron) == (None, None, None)


async def test_rate_limit_counter_counts_per_bucket_and_window(store: Store) -> None:
    hits = [await store.rate_limits.hit("a", window_start=60) for _ in range(3)]
    assert [h.current for h in hits] == [1, 2, 3]
    assert await store.rate_limits.hit("b", window_start=60) == (1, 0)
    # The next window sees the previous one (the sliding estimate needs it) ...
    assert await store.rate_limits.hit("a", window_start=120) == (1, 3)
    # ... and one further on does not.
    assert await store.rate_limits.hit("a", window_start=240) == (1, 0)


async def test_an_admission_counts_and_reads_the_signing_key_in_one_statement(
    store: Store,
) -> None:
    """The admission's one statement (``Store.count_and_probe``): counted as ``hit`` counts,
    the chain's key beside it (none before the first record), the old windows forgotten."""
    for window in (60, 120):
        await store.rate_limits.hit("a", window_start=window)
    counted = [await store.rate_limits.count_with_signing_key(Hit("a", 240, 60)) for _ in "xy"]
    assert counted == [(WindowHits(1, 0), None), (WindowHits(2, 0), None)]
    assert await store.rate_limits.hit("a", window_start=300) == (1, 2)
    assert await store.rate_limits.hit("a", window_start=180) == (1, 0)  # 60, 120 forgotten


async def test_a_single_statement_write_is_one_statement(store: Store) -> None:
    """It runs without BEGIN and COMMIT, so a second statement would not be in its
    transaction: refused, loudly; the first one stands on its own."""

    async def two_statements() -> None:
        async with store.database.transaction(single_statement=True) as conn:
            await conn.execute(text("INSERT INTO rate_limits VALUES ('s', 1, 1)"))
            await conn.execute(text("INSERT INTO rate_limits VALUES ('s', 2, 1)"))

    with pytest.raises(RuntimeError, match="second statement"):
        await two_statements()
    assert await store.rate_limits.hit("s", window_start=1) == (2, 0)
    assert await store.rate_limits.hit("s", window_start=2) == (1, 0)


async def test_the_soonest_expiry_is_of_a_certificate_still_valid(store: Store) -> None:
    """The gauge's minimum leaves out revoked and expired certificates, and is None
    without any valid one."""
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    assert await store.certificates.soonest_expiry(now) is None
    days = dt.timedelta(days=1)
    for serial, not_after in (("A1", now - days), ("B2", now + days), ("C3", now + 9 * days)):
        await store.certificates.add(a_certificate(serial, not_after), issued_at=now - 9 * days)
    await store.certificates.add(a_certificate("D4", now + 30 * days), issued_at=now)
    assert await store.certificates.soonest_expiry(now) == now + days
    await store.certificates.revoke("B2", reason="keyCompromise", at=now)
    assert await store.certificates.soonest_expiry(now) == now + 9 * days
    assert await store.certificates.soonest_expiry(now + 10 * days) == now + 30 * days
    assert await store.certificates.soonest_expiry(now + 31 * days) is None


def a_certificate(serial: str, not_after: dt.datetime) -> CertificateRecord:
    return CertificateRecord(
        serial=serial,
        role=CertificateRole.CLIENT,
        routeringskenmerk=serial * 4,
        subject=f"CN=LAS {serial}",
        not_before=not_after - dt.timedelta(days=365),
        not_after=not_after,
        revoked_at=None,
        revocation_reason=None,
    )


async def test_the_gauges_scans_on_sqlite_run_off_the_event_loop(tmp_path: Path) -> None:
    """On SQLite a statement runs on the loop's thread; the gauges' reads scan tables that
    grow for years (every certificate issued, every session until its retention ends), so
    they run in a worker thread and hold up no request (bench/gauges_bench.py)."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'tc.db'}")
    try:
        assert isinstance(store.database, SqliteDatabase)
        ran_on: dict[str, int] = {}

        def note_thread(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
            for aggregate in ("count(", "min("):
                if aggregate in sql.lower():
                    ran_on[aggregate] = threading.get_ident()

        event.listen(store.database.engine, "before_cursor_execute", note_thread)
        now = dt.datetime.now(dt.UTC)
        await store.certificates.add(a_certificate("E5", now + dt.timedelta(days=1)), issued_at=now)
        assert await store.certificates.soonest_expiry(now) is not None
        assert await store.sessions.open_count(now) == 0
        loop_thread = threading.get_ident()
        assert set(ran_on) == {"count(", "min("}
        assert loop_thread not in ran_on.values()
    finally:
        await store.close()


async def test_a_frozen_postgresql_fails_a_statement_instead_of_holding_it(
    database_factory: DatabaseFactory,
) -> None:
    """A server that stops answering without closing (a paused VM, a stalled disk) held
    each statement, and the request waiting on it, for as long as it stayed so: now the
    statement fails after the timeout (503 for its request), and a later one gets a new
    connection."""
    url = await database_factory("postgres")
    store = await Store.open(url, pool_size=1, max_overflow=0, statement_timeout_seconds=1)
    try:
        async with store.database.transaction(read_only=True) as conn:
            backend = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        os.kill(backend, signal.SIGSTOP)  # that connection's server process, only
        try:
            async with asyncio.timeout(10):  # a hang fails the test; the timeout is 1 s
                with pytest.raises(StoreUnavailable):
                    await store.audit.head()
        finally:
            os.kill(backend, signal.SIGCONT)
        assert (await store.audit.head()).count == 0
    finally:
        await store.close()


async def test_a_process_pool_on_postgresql_is_sized_by_the_settings(
    database_factory: DatabaseFactory,
) -> None:
    """TC_DATABASE_POOL_SIZE + TC_DATABASE_MAX_OVERFLOW bound one process's connections."""
    settings = Settings(
        database_url=await database_factory("postgresql"),
        database_pool_size=2,
        database_max_overflow=1,
    )
    async with open_store(settings) as store:
        pool = store.database.engine.pool
        assert isinstance(pool, AsyncAdaptedQueuePool)
        assert (pool.size(), pool._max_overflow) == (2, 1)
        # Three transactions at once is all the pool gives: each holds a connection.
        async with contextlib.AsyncExitStack() as held:
            for _ in range(3):
                await held.enter_async_context(store.database.transaction())
            assert pool.checkedout() == 3
        # Between transactions the store keeps at most pool_size of them for the next ones.
        assert pool.checkedout() == 2
    assert (Settings().database_pool_size, Settings().database_max_overflow) == (5, 5)


async def test_a_local_postgresql_is_reached_over_its_unix_socket(
    database_factory: DatabaseFactory, postgres: PostgresServer
) -> None:
    """TC_DATABASE_URL as README's operators section names a PostgreSQL on the same machine
    (``postgresql+asyncpg://user@/db?host=/socket/dir&port=N``): migrated, written, read back,
    and the connection is the socket's (PostgreSQL knows no server address for one)."""
    name = make_url(await database_factory("postgresql")).database
    assert name is not None
    store = await Store.open(postgres.socket_url(name))
    try:
        async with store.database.transaction() as conn:
            assert (await conn.execute(text("SELECT inet_server_addr()"))).scalar() is None
        records = [a_record(n) for n in range(3)]
        await store.audit.append_all(records, secret=KEY)
        verdict = await verify_chain(store, KEY)
        assert (verdict.broken, verdict.checked) == (None, len(records))
    finally:
        await store.close()
