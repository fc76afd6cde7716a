"""The engine, transactions, and the boundary where driver errors become StoreUnavailable.

PostgreSQL is driven through asyncpg. SQLite is driven through the standard library's driver
(SQLAlchemy's sync engine) on the event loop's own thread: a whole transaction costs tens of
microseconds there, against a thread hand-off per statement through aiosqlite. What could
block the loop is another process's lock, so a transaction starts on the loop with a busy
timeout of a few milliseconds; when SQLite is busy it starts again in a worker thread with
the long wait, and once it holds its lock the rest runs on the loop again (issue 14).

A repository's hot statements (built once, with bindparam()s) run compiled once by SQLAlchemy
on the driver itself, past SQLAlchemy's execution (``store/compiled.py``); on PostgreSQL the
transaction is begun and ended on the driver, so those statements and the ones SQLAlchemy
runs share it. The pool still checks connections out and in, pings the idle ones, and drops
the broken ones; the driver's errors are raised as SQLAlchemy's, and mapped here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    NoSuchModuleError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.sql.base import Executable

from traffic_center.domain.errors import NodeMisconfigured, StoreUnavailable, TrafficCenterError
from traffic_center.store.compiled import CompiledStatement, FastResult, StatementCache
from traffic_center.store.revisions import READ_REVISIONS, VERSION_TABLE, at_head

T = TypeVar("T")

# What ``StoreConnection.execute`` answers: SQLAlchemy's result, or the fast path's (the same
# reading API, every row already fetched).
StoreResult = CursorResult[Any] | FastResult
_NO_VALUES: Mapping[str, Any] = {}

# How long a SQLite transaction may wait for another connection's lock: on the event loop
# only a moment (the loop serves every other request meanwhile), in a worker thread as long
# as SQLite always waited here.
LOOP_BUSY_MS = 2
THREAD_BUSY_MS = 30_000
# SQLite transactions of one process that wait for the lock at once, each in a thread with a
# connection of its own; the rest queue for a thread (the pool settings are PostgreSQL's).
WAITING_THREADS = 10


class StoreConnection:
    """The connection of one transaction, as a repository uses it."""

    def __init__(self, statements: StatementCache, *, single_statement: bool) -> None:
        self._statements = statements
        self._single_statement = single_statement
        self._executed = False

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> StoreResult:
        """Run ``statement``; ``parameters`` fill its bindparam()s. A repository builds its
        hot statements once and passes only the values: from the second time on such a
        statement runs compiled, on the driver itself (``store/compiled.py``)."""
        raise NotImplementedError

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        """Sync SQLAlchemy work (Alembic, inspection) inside this transaction."""
        raise NotImplementedError

    def _compiled(
        self, statement: Executable, parameters: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any], CompiledStatement | None]:
        """The values, and ``statement`` as the driver runs it (None: SQLAlchemy runs it).
        A single-statement transaction's second statement is a bug: it would run outside
        the first one's transaction."""
        if self._single_statement and self._executed:
            raise RuntimeError("a single_statement transaction ran a second statement")
        self._executed = True
        values = _NO_VALUES if parameters is None else parameters
        return values, self._statements.get(statement, values)

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError

    async def _invalidate(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


class Database:
    """One store URL's engine. Built by ``open_database``; disposed by the owner."""

    # Whether a transaction hands the event loop to other tasks while it runs (a server
    # round trip). SQLite's run whole on the loop (unless they wait for another process's
    # lock), so two of one process never overlap: a writer that wants to share its
    # transaction with others must let them come by first (``AuditTrail``).
    transactions_yield = True

    def __init__(self, url: URL) -> None:
        self.url = url
        # Told how long each transaction took ("read" or "write", seconds); the app sets it
        # to a metric, so the store itself stays free of Prometheus.
        self.observe: Callable[[str, float], None] | None = None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def transaction(
        self, *, read_only: bool = False, single_statement: bool = False
    ) -> AsyncIterator[StoreConnection]:
        """A transaction that commits on success; driver failures become StoreUnavailable.

        ``read_only`` is a promise the transaction only reads: SQLite then begins it deferred
        (a WAL reader never waits for a writer); writers begin IMMEDIATE and queue.

        ``single_statement`` is a promise the write is one statement (a second one raises):
        the database runs it as its own transaction, without BEGIN and COMMIT around it. On
        PostgreSQL that is one round trip instead of three (issue 14); atomic all the same.
        """
        started = time.perf_counter()
        connection: StoreConnection | None = None
        try:
            connection = await self._begin(
                read_only=read_only, autocommit=read_only or single_statement
            )
            try:
                yield connection
            except BaseException:
                await _roll_back(connection)
                raise
            await connection._commit()
        except (IntegrityError, DataError):
            raise  # about the data, not the store: a repository decides what it means
        except DBAPIError as exc:
            if _about_the_data(exc):
                raise
            await _drop(connection)
            raise StoreUnavailable(_why_unavailable(exc)) from exc
        except (TimeoutError, PoolTimeout, OSError) as exc:
            await _drop(connection)
            raise StoreUnavailable(_why_unavailable(exc)) from exc
        finally:
            if connection is not None:
                await connection._close()
            if self.observe is not None:
                self.observe("read" if read_only else "write", time.perf_counter() - started)

    async def _begin(self, *, read_only: bool, autocommit: bool) -> StoreConnection:
        """A connection inside a transaction just begun; with ``autocommit`` one whose
        statements are each their own transaction (reads, and single-statement writes)."""
        raise NotImplementedError

    async def ping(self) -> None:
        async with self.transaction(read_only=True) as connection:
            await connection.execute(text("SELECT 1"))

    async def scan_for_scalar(
        self, query: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Any:
        """One value of a read that scans a table (a gauge's count or minimum), read in a
        worker thread. On SQLite a statement otherwise runs on the event loop, and such a
        scan grows with the table: 100,000 sessions took ~20 ms, held up every request each
        time the gauges were read. sqlite3 lets go of the GIL while SQLite scans; on
        PostgreSQL the server scans either way."""
        async with self.transaction(read_only=True) as connection:
            return await connection.run_sync(
                lambda sync: sync.execute(query, parameters or None).scalar()
            )

    async def migrate(self) -> None:
        """Upgrade to head; a database already there costs one SELECT and no Alembic import."""
        async with self.transaction() as connection:
            if at_head(await connection.run_sync(recorded_revisions)):
                return
            from traffic_center.store.migrate import upgrade_to_head

            await connection.run_sync(upgrade_to_head)

    async def dispose(self) -> None:
        raise NotImplementedError


# --- PostgreSQL: asyncpg ------------------------------------------------------------------------


class _AsyncConnection(StoreConnection):
    """A pooled asyncpg connection in autocommit at SQLAlchemy's level: the transaction is
    ours (BEGIN and COMMIT on the driver), so a statement run on the driver and one run
    through SQLAlchemy are in the same transaction. SQLAlchemy's adapter would begin its
    own lazily, on its first statement, unseen by the driver's statements."""

    def __init__(
        self,
        connection: AsyncConnection,
        driver: Any,
        database: AsyncDatabase,
        *,
        in_transaction: bool,
        single_statement: bool,
    ) -> None:
        super().__init__(database.statements, single_statement=single_statement)
        self._connection = connection
        self._driver = driver  # the asyncpg.Connection
        self._database = database
        self._in_transaction = in_transaction

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> StoreResult:
        values, compiled = self._compiled(statement, parameters)
        if compiled is None:
            return await self._connection.execute(statement, parameters)
        arguments = compiled.arguments(values)
        try:
            if compiled.returns_rows:
                rows = await self._driver.fetch(compiled.sql, *arguments)
                return compiled.result(rows, len(rows))
            status = await self._driver.execute(compiled.sql, *arguments)
        except Exception as exc:
            raise self._translated(exc, compiled.sql, arguments) from exc
        return compiled.result((), _rowcount(status))

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        return await self._connection.run_sync(work)

    async def begin(self) -> None:
        # READ COMMITTED, as SQLAlchemy's adapter began them.
        await self._on_driver("BEGIN ISOLATION LEVEL READ COMMITTED")
        self._in_transaction = True

    async def _commit(self) -> None:
        if self._in_transaction:
            await self._on_driver("COMMIT")
            self._in_transaction = False

    async def _rollback(self) -> None:
        if self._in_transaction:
            await self._on_driver("ROLLBACK")
            self._in_transaction = False

    async def _invalidate(self) -> None:
        await self._connection.invalidate()

    async def _close(self) -> None:
        if self._in_transaction:
            # Interrupted between BEGIN and its end (a cancellation): the pool's reset would
            # not end our transaction, so the connection does not go back.
            await _drop(self)
        await self._database.release(self._connection, self._driver)

    async def _on_driver(self, sql: str) -> None:
        try:
            await self._driver.execute(sql)
        except Exception as exc:
            raise self._translated(exc, sql, ()) from exc

    def _translated(self, error: Exception, sql: str, arguments: Any) -> Exception:
        """The driver's error as SQLAlchemy would have raised it (IntegrityError, DataError,
        OperationalError...: ``Database.transaction`` maps them); OSError and TimeoutError
        stay what they are, as through SQLAlchemy's adapter."""
        # Imported here: asyncpg comes with the [postgres] extra.
        from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

        dialect = self._connection.dialect
        try:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(
                dialect.loaded_dbapi, error
            )
        except dialect.loaded_dbapi.Error as translated:
            return DBAPIError.instance(
                sql, arguments, translated, dialect.loaded_dbapi.Error, dialect=dialect
            )
        except Exception as untranslated:
            return untranslated
        return error  # not reached: the adapter always raises


def _rowcount(status: str | None) -> int:
    """Rows an INSERT, UPDATE or DELETE touched, from the server's status ("UPDATE 3")."""
    try:
        return int((status or "").rsplit(" ", 1)[-1])
    except ValueError:
        return -1


class AsyncDatabase(Database):
    """A server database through an async driver (asyncpg)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.url)
        self.engine = engine
        # SQLAlchemy in autocommit: the transactions are begun and ended on the driver
        # (``_AsyncConnection``). A reader needs no BEGIN and COMMIT around its statements:
        # under READ COMMITTED each statement sees its own snapshot inside a transaction
        # too, so a read is one round trip (issue 14).
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.statements = StatementCache(engine.dialect)
        # Connections between two transactions, kept checked out, with when they came back:
        # the pool's checkout and checkin (and SQLAlchemy's greenlet around each) cost about
        # as much as a round trip, twice per transaction (issue 14). At most pool_size are
        # kept; they count against the pool's limit like any checked-out connection.
        self._idle: list[tuple[AsyncConnection, Any, float]] = []
        self._keep = engine.pool.size() if isinstance(engine.pool, QueuePool) else 0

    async def _connect(self) -> tuple[AsyncConnection, Any]:
        """A connection kept from a moment ago, or one from the pool. One kept for longer than
        IDLE_PING_SECONDS is pinged first, as the pool's checkout pings (``_ping_when_idle``),
        so a server that restarted meanwhile costs no transaction: it is replaced."""
        while self._idle:
            connection, driver, returned_at = self._idle.pop()
            if time.monotonic() - returned_at < IDLE_PING_SECONDS:
                return connection, driver
            try:
                await driver.execute("SELECT 1")
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled: back to the pool, unpinged
                    await connection.close()
                    raise
                with contextlib.suppress(Exception):
                    await connection.invalidate()  # gone with the server: never reused
                await connection.close()
                continue
            return connection, driver
        connection = await self._autocommit_engine.connect()
        try:
            raw = await connection.get_raw_connection()
        except BaseException:
            await connection.close()
            raise
        return connection, raw.driver_connection

    async def release(self, connection: AsyncConnection, driver: Any) -> None:
        """Keep ``connection`` for the next transaction, unless it is broken or enough are
        kept; a kept one has no transaction open (``_AsyncConnection._close`` drops those)."""
        if connection.invalidated or driver.is_closed() or len(self._idle) >= self._keep:
            await connection.close()
            return
        self._idle.append((connection, driver, time.monotonic()))

    async def _begin(self, *, read_only: bool, autocommit: bool) -> StoreConnection:
        connection, driver = await self._connect()
        try:
            begun = _AsyncConnection(
                connection,
                driver,
                self,
                in_transaction=False,
                single_statement=autocommit and not read_only,
            )
            if not autocommit:
                await begun.begin()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            await connection.close()
            raise
        return begun

    async def dispose(self) -> None:
        idle, self._idle = self._idle, []
        for connection, _driver, _returned_at in idle:
            await connection.close()
        await self.engine.dispose()


# --- SQLite: the standard library's driver, on the loop -----------------------------------------


class _SqliteConnection(StoreConnection):
    """Statements run on the calling (loop) thread: a writer already holds its lock, and a
    reader waits for nobody (WAL) but in rare moments (a crashed writer's WAL recovery)."""

    def __init__(
        self,
        connection: _Pooled,
        database: SqliteDatabase,
        *,
        autocommit: bool,
        single_statement: bool = False,
    ) -> None:
        super().__init__(database.statements, single_statement=single_statement)
        self._connection, self._driver = connection
        self._database = database
        self._autocommit = autocommit

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> StoreResult:
        values, compiled = self._compiled(statement, parameters)
        try:
            return self._run(statement, values, compiled)
        except DBAPIError as exc:
            if not (self._autocommit and _busy(exc)):
                raise
        # A statement in autocommit that found the lock taken did nothing: it can simply run
        # again, waiting.
        connection = self._connection

        def run_waiting() -> StoreResult:
            return _waiting(connection, lambda: self._run(statement, values, compiled))

        return await anyio.to_thread.run_sync(run_waiting)

    def _run(
        self,
        statement: Executable,
        parameters: Mapping[str, Any],
        compiled: CompiledStatement | None,
    ) -> StoreResult:
        if compiled is None:
            return self._connection.execute(statement, parameters or None)
        return _on_sqlite(self._driver, compiled, parameters, self._connection.dialect)

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        # Long work (a migration) in a thread: other transactions fall back to waiting.
        return await anyio.to_thread.run_sync(work, self._connection)

    # On the driver, as the BEGIN: SQLAlchemy's own transaction is one only when a statement
    # went through it, and ending the driver's ends that one too (its later end is a no-op).
    async def _commit(self) -> None:
        _on_driver(self._driver.commit, "COMMIT", self._connection.dialect)

    async def _rollback(self) -> None:
        _on_driver(self._driver.rollback, "ROLLBACK", self._connection.dialect)

    async def _invalidate(self) -> None:
        self._connection.invalidate()

    async def _close(self) -> None:
        self._database.release((self._connection, self._driver))


class SqliteDatabase(Database):
    """A SQLite file: each transaction on the loop, its wait for a lock in a thread."""

    transactions_yield = False

    def __init__(self, engine: Engine, *, waiting_threads: int) -> None:
        super().__init__(engine.url)
        self.engine = engine
        # Transactions waiting for another process's lock: each holds a thread and a
        # connection, so they are bounded; more wait here, on the loop, holding neither.
        self._waiting = anyio.CapacityLimiter(waiting_threads)
        self.statements = StatementCache(engine.dialect)
        # Connections between two transactions, kept open on the loop's thread: the pool's
        # checkout and checkin around every transaction cost more than its statements.
        self._idle: list[_Pooled] = []

    async def _begin(self, *, read_only: bool, autocommit: bool) -> StoreConnection:
        """A reader needs no BEGIN: every read transaction here is one statement, which
        SQLite runs as its own transaction, on its own snapshot (as PostgreSQL's autocommit
        reads do); so does a single-statement write. Any other writer begins IMMEDIATE: it
        takes the write lock up front and queues for it, where a deferred transaction that
        reads and then writes could fail at once with SQLITE_BUSY when another writer got in
        between."""
        if autocommit:
            return _SqliteConnection(
                self._connect(), self, autocommit=True, single_statement=not read_only
            )
        pooled = self._connect()
        if not _begin_unless_busy(pooled):
            self.release(pooled)
            waited = await anyio.to_thread.run_sync(
                _begin_waiting, self.engine, limiter=self._waiting
            )
            pooled = (waited, _driver_of(waited))
        return _SqliteConnection(pooled, self, autocommit=False)

    def _connect(self) -> _Pooled:
        if self._idle:
            return self._idle.pop()
        connection = self.engine.connect()
        return connection, _driver_of(connection)

    def release(self, pooled: _Pooled) -> None:
        """Keep the connection for the next transaction, unless it is broken or enough are
        kept; a kept one is between transactions (SQLite's and SQLAlchemy's). Its driver
        connection is the one it had: only an invalidation replaces that, and an invalidated
        connection is closed here, never kept."""
        connection, driver = pooled
        if connection.invalidated or driver.in_transaction or len(self._idle) >= DEFAULT_POOL_SIZE:
            connection.close()
            return
        if connection.in_transaction():
            connection.rollback()  # SQLAlchemy's bookkeeping only: SQLite's has ended
        self._idle.append(pooled)

    async def dispose(self) -> None:
        idle, self._idle = self._idle, []
        for connection, _driver in idle:
            connection.close()
        self.engine.dispose()


# A SQLAlchemy connection with its sqlite3 connection, looked up once: through SQLAlchemy's
# pool that is two property calls, and a transaction needed it twice (issue 14).
_Pooled = tuple[Connection, sqlite3.Connection]


def _driver_of(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _on_sqlite(
    driver: sqlite3.Connection,
    compiled: CompiledStatement,
    parameters: Mapping[str, Any],
    dialect: Dialect,
) -> FastResult:
    """``compiled`` run on the sqlite3 connection itself; its errors as SQLAlchemy's."""
    arguments = compiled.arguments(parameters)
    try:
        cursor = driver.execute(compiled.sql, arguments)
        rows = cursor.fetchall()  # before the rowcount: an INSERT RETURNING counts as it goes
        return compiled.result(rows, cursor.rowcount)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            compiled.sql, arguments, exc, sqlite3.Error, dialect=dialect
        ) from exc


def _begin_unless_busy(pooled: _Pooled) -> bool:
    """Whether a write transaction began at once: False while another writer holds the lock."""
    connection, driver = pooled
    try:
        _on_driver(partial(driver.execute, "BEGIN IMMEDIATE"), "BEGIN", connection.dialect)
    except DBAPIError as exc:
        if not _busy(exc):
            _discard(connection)
            raise
        return False
    except BaseException:
        _discard(connection)
        raise
    return True


def _on_driver(call: Callable[[], object], sql: str, dialect: Dialect) -> None:
    """``call()`` on the sqlite3 connection; its error as SQLAlchemy's (``_on_sqlite``)."""
    try:
        call()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, (), exc, sqlite3.Error, dialect=dialect) from exc


def _begin_waiting(engine: Engine) -> Connection:
    """In a worker thread: begin, waiting up to THREAD_BUSY_MS for the write lock."""
    connection = engine.connect()
    try:
        _waiting(connection, lambda: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    except BaseException:
        _discard(connection)
        raise
    return connection


def _waiting(connection: Connection, run: Callable[[], T]) -> T:
    """``run()`` with the connection's busy timeout the long one meanwhile."""
    connection.exec_driver_sql(f"PRAGMA busy_timeout={THREAD_BUSY_MS}")
    try:
        return run()
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={LOOP_BUSY_MS}")


def _busy(exc: DBAPIError) -> bool:
    return (
        isinstance(exc.orig, sqlite3.Error)
        and (exc.orig.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_BUSY
    )


# SQLite's reasons an operator can act on; anything else "did not answer".
_SQLITE_REASONS = {
    sqlite3.SQLITE_READONLY: "the store cannot be written: its database file is read-only",
    sqlite3.SQLITE_FULL: "the store cannot be written: the disk holding it is full",
    sqlite3.SQLITE_CANTOPEN: "the store's database file cannot be opened",
}


def _why_unavailable(exc: Exception) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else None
    if isinstance(cause, sqlite3.Error):
        reason = _SQLITE_REASONS.get(cause.sqlite_errorcode & 0xFF)
        if reason is not None:
            return reason
    return f"the store did not answer: {type(exc).__name__}"


def _discard(connection: Connection) -> None:
    with contextlib.suppress(Exception):
        connection.invalidate()
    connection.close()


def recorded_revisions(connection: Connection) -> list[str]:
    """The revisions ``alembic_version`` holds; none for a database never migrated."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    return [str(v) for v in connection.execute(text(READ_REVISIONS)).scalars()]


async def _roll_back(connection: StoreConnection) -> None:
    """Undo the body's work; the body's own error is what the caller hears of, so a
    rollback that fails too only drops the connection."""
    try:
        await connection._rollback()
    except Exception:
        await _drop(connection)


async def _drop(connection: StoreConnection | None) -> None:
    """A connection that failed (a disk I/O error, a server that went away) may stay broken;
    drop it, so the next transaction gets a fresh one: recovery by itself."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection._invalidate()


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


# A PostgreSQL server that has not answered a statement, or a new connection's set-up,
# within this long fails it: the request gets 503 `OpslagNietBeschikbaar` and the node's
# readiness follows, where a server frozen (not down: a stalled disk, a paused VM) held every
# request for as long as it stayed so. A store statement takes milliseconds; the longest,
# the hourly purge, goes in batches. That is the serving node's bound: administration (a
# migration of a large log, an export) does long work by design, with an operator watching,
# and opens the store without one (admin/store.py). Connecting is bounded for both.
STATEMENT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0


def open_database(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    statement_timeout_seconds: float | None = STATEMENT_TIMEOUT_SECONDS,
) -> Database:
    """An engine for ``url``; on PostgreSQL with a pool of ``pool_size`` + ``max_overflow``,
    each statement failing after ``statement_timeout_seconds`` (None: never).

    A SQLite URL may name any driver (``sqlite+aiosqlite://`` is the one settings once wrote):
    the store always drives SQLite through the standard library's ``sqlite3``.
    """
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(parsed, echo=echo)
    engine = _async_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        statement_timeout_seconds=statement_timeout_seconds,
    )
    _ping_when_idle(engine)
    return AsyncDatabase(engine)


_URL_FORMS = "postgresql+asyncpg://user@host/database for PostgreSQL, sqlite:///path for SQLite"


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        # Not quoted in the line: a URL may hold a password.
        raise NodeMisconfigured(f"TC_DATABASE_URL is not a database URL: {_URL_FORMS}") from exc


def _async_engine(
    parsed: URL,
    *,
    echo: bool,
    pool_size: int,
    max_overflow: int,
    statement_timeout_seconds: float | None,
) -> AsyncEngine:
    try:
        return create_async_engine(
            parsed,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=10,
            connect_args={
                "command_timeout": statement_timeout_seconds,
                "timeout": CONNECT_TIMEOUT_SECONDS,
            },
        )
    except NoSuchModuleError as exc:
        raise NodeMisconfigured(
            f"TC_DATABASE_URL names a database SQLAlchemy does not know "
            f"({parsed.drivername}://): {_URL_FORMS}"
        ) from exc
    except ModuleNotFoundError as exc:
        # SQLAlchemy imports the driver only now; asyncpg comes with the [postgres] extra.
        raise _missing_driver(parsed, exc.name) from exc


def _missing_driver(parsed: URL, driver: str | None) -> TrafficCenterError:
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "asyncpg":
        # postgresql:// alone means SQLAlchemy's default driver, one the store never uses:
        # installing the [postgres] extra would not help.
        return NodeMisconfigured(
            f"TC_DATABASE_URL asks for the PostgreSQL driver {driver!r}: "
            "write postgresql+asyncpg://… (the driver of pip install 'traffic-center[postgres]')"
        )
    return StoreUnavailable(
        f"the database driver {driver!r} is not installed"
        " (for PostgreSQL: pip install 'traffic-center[postgres]')"
    )


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Recover by itself after the server was away, without a ping per transaction.

    pool_pre_ping was a round trip before every transaction (0.57 ms of 1.32, issue 14).
    Under load a connection comes back to the pool within milliseconds and is not pinged:
    if the server went away meanwhile, the transaction fails, the connection is dropped
    (``_drop``) and SQLAlchemy recycles the rest of the pool (the driver reports the
    disconnect). A connection idle for longer, as every one is across a restart, is pinged
    first, and replaced if the server does not answer it.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < IDLE_PING_SECONDS:
            return  # new (it has just answered), or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer") from exc


# A pooled PostgreSQL connection unused for this long is pinged before it is trusted. A
# server restart takes longer, so every connection older than a restart is pinged; under load
# a connection is back in use within milliseconds and never is.
IDLE_PING_SECONDS = 0.25
_RETURNED_AT = "traffic_center_returned_at"


def _open_sqlite(parsed: URL, *, echo: bool) -> SqliteDatabase:
    database = parsed.database or ""
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database).parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # a new home
        _owner_only(Path(database))
    engine = create_engine(
        parsed.set(drivername="sqlite+pysqlite"),
        echo=echo,
        # One memory database is one connection; a file gets a connection per transaction
        # in flight. Never a wait for the pool on the loop: the waiting is bounded by the
        # threads allowed to wait for SQLite's lock (SqliteDatabase._waiting).
        poolclass=StaticPool if in_memory else QueuePool,
        **({} if in_memory else {"pool_size": DEFAULT_POOL_SIZE, "max_overflow": -1}),
        connect_args={"timeout": LOOP_BUSY_MS / 1000, "check_same_thread": False},
    )
    _configure_sqlite(engine)
    return SqliteDatabase(engine, waiting_threads=WAITING_THREADS)


def _owner_only(database: Path) -> None:
    """The store's files readable by the node's user alone (issue 10: they were 0644).

    SQLite gives the -wal and -shm files the database file's mode, so creating that one 0600
    before SQLite does is enough; files of an older node are tightened too.
    """
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            with contextlib.suppress(FileNotFoundError):
                # Only what is looser: an immutable or read-only file that is already the
                # owner's alone is left to SQLite (which opens it, or says why not).
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot make the database {exc.filename} readable by its owner only: {exc.strerror}"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers; writers emit BEGIN IMMEDIATE themselves (``SqliteDatabase._begin``)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={LOOP_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite quietly opens a file it cannot write read-only, and such a connection would
        # stay in the pool refusing every write after the file is writable again. Take the
        # write lock for a moment: a connection that cannot write is not made at all. Busy
        # means another connection holds the lock, so the file is writable: keep it.
        try:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) != sqlite3.SQLITE_BUSY:
                raise
        finally:
            cursor.close()
