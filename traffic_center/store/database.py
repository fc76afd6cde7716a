"""The engine, transactions, and the boundary where driver errors become StoreUnavailable."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from traffic_center.domain.errors import StoreUnavailable
from traffic_center.store.revisions import READ_REVISIONS, VERSION_TABLE, at_head

# Execution option marking a read-only transaction, so SQLite may start it deferred.
READ_ONLY = "traffic_center_read_only"


class Database:
    """One engine for one URL. Built by ``open_database``; disposed by the owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Told how long each transaction took ("read" or "write", seconds); the app sets it
        # to a metric, so the store itself stays free of Prometheus.
        self.observe: Callable[[str, float], None] | None = None
        # Same pool, marked: lets SQLite readers run beside a writer instead of queueing.
        self._read_engine = engine.execution_options(**{READ_ONLY: True})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success; driver failures become StoreUnavailable.

        ``read_only`` is a promise the transaction only reads: SQLite then begins it deferred
        (a WAL reader never waits for a writer); writers begin IMMEDIATE and queue.
        """
        engine = self._read_engine if read_only else self.engine
        started = time.perf_counter()
        connection: AsyncConnection | None = None
        try:
            connection = await engine.connect()
            async with connection.begin():
                yield connection
        except (IntegrityError, DataError):
            raise  # about the data, not the store: a repository decides what it means
        except DBAPIError as exc:
            if _about_the_data(exc):
                raise
            await _drop(connection)
            raise StoreUnavailable(f"the store did not answer: {type(exc).__name__}") from exc
        except (TimeoutError, PoolTimeout, OSError) as exc:
            await _drop(connection)
            raise StoreUnavailable(f"the store did not answer: {type(exc).__name__}") from exc
        finally:
            if connection is not None:
                await connection.close()
            if self.observe is not None:
                self.observe("read" if read_only else "write", time.perf_counter() - started)

    async def ping(self) -> None:
        async with self.transaction(read_only=True) as connection:
            await connection.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Upgrade to head; a database already there costs one SELECT and no Alembic import."""
        async with self.transaction() as connection:
            if at_head(await connection.run_sync(recorded_revisions)):
                return
            from traffic_center.store.migrate import upgrade_to_head

            await connection.run_sync(upgrade_to_head)

    async def dispose(self) -> None:
        await self.engine.dispose()


def recorded_revisions(connection: Connection) -> list[str]:
    """The revisions ``alembic_version`` holds; none for a database never migrated."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    return [str(v) for v in connection.execute(text(READ_REVISIONS)).scalars()]


async def _drop(connection: AsyncConnection | None) -> None:
    """A connection that failed (a disk I/O error, a server that went away) may stay broken;
    drop it, so the next transaction gets a fresh one: recovery by itself."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.invalidate()


def _about_the_data(exc: DBAPIError) -> bool:
    """SQLSTATE class 22 (data exception) or 23 (integrity): the request, not the store.

    asyncpg's errors reach us as the generic DBAPIError, with the code on ``orig``.
    """
    code = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    return code.startswith(("22", "23"))


# The settings' defaults (TC_DATABASE_POOL_SIZE, TC_DATABASE_MAX_OVERFLOW), for callers
# without settings: 10 connections at most per process.
DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_OVERFLOW = 5


def open_database(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
) -> Database:
    """An engine for ``url``; on PostgreSQL with a pool of ``pool_size`` + ``max_overflow``."""
    parsed = make_url(url)
    options: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            _owner_only(Path(database))
        options["connect_args"] = {"timeout": 30}
    else:
        # Recover by itself after the store was away: test connections before use.
        options.update(
            pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=10
        )
    try:
        engine = create_async_engine(url, **options)
    except ModuleNotFoundError as exc:
        # SQLAlchemy imports the driver only now; asyncpg comes with the [postgres] extra.
        raise StoreUnavailable(
            f"the database driver {exc.name!r} is not installed"
            " (for PostgreSQL: pip install 'traffic-center[postgres]')"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    return Database(engine)


def _owner_only(database: Path) -> None:
    """The store's files readable by the node's user alone (issue 10: they were 0644).

    SQLite gives the -wal and -shm files the database file's mode, so creating that one 0600
    before SQLite does is enough; files of an older node are tightened too.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers; BEGIN IMMEDIATE so writers queue instead of deadlocking.

    A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
    another writer got in between; taking the write lock up front makes it wait instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite quietly opens a file it cannot write read-only, and such a connection would
        # stay in the pool refusing every write after the file is writable again. Take the
        # write lock for a moment: a connection that cannot write is not made at all.
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("ROLLBACK")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
