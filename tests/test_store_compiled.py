"""The store's fast path (statements compiled once, run on the driver) against SQLAlchemy's
own execution, on both backends: the same values written, the same values read back, and
the driver's errors mapped as SQLAlchemy maps them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, String, Table, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert

from traffic_center.store.compiled import FastResult, compile_for_driver
from traffic_center.store.database import StoreConnection
from traffic_center.store.schema import metadata, schools
from traffic_center.store.store import Store

# Not UTC: the bind processor (UtcDateTime) must convert it, on both paths alike.
A_MOMENT = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def row_values(table: Table, number: int, *, with_nulls: bool) -> dict[str, Any]:
    """A row for ``table``: unique strings and integers; the same moment and bytes in every
    row, a boolean by the number's parity; None in the nullable columns when ``with_nulls``."""
    values: dict[str, Any] = {}
    for column in table.columns:
        if with_nulls and column.nullable:
            values[column.name] = None
        elif column.foreign_keys:
            parent = next(iter(column.foreign_keys)).column
            values[column.name] = f"0{parent.name}"[: parent.type.length]  # row 0 of the parent
        elif isinstance(column.type, String):
            values[column.name] = f"{number}{column.name}"[: column.type.length]
        elif isinstance(column.type, Boolean):
            values[column.name] = number % 2 == 0
        elif isinstance(column.type, Integer):
            values[column.name] = 1000 + number
        elif isinstance(column.type, LargeBinary):
            values[column.name] = b"\x00\xffder"
        else:
            assert isinstance(column.type.impl, DateTime), column
            values[column.name] = A_MOMENT
    return values


def processed_columns(table: Table) -> list[str]:
    """The columns whose values a bind processor may change (neither strings nor integers)."""
    return [c.name for c in table.columns if not isinstance(c.type, String | Integer)]


async def insert_three_times(
    conn: StoreConnection, table: Table, rows: list[dict[str, Any]]
) -> None:
    """With one statement object: the first through SQLAlchemy, the others on the fast path."""
    statement = table.insert()
    for number, values in enumerate(rows):
        result = await conn.execute(statement, values)
        assert isinstance(result, FastResult) is (number > 0)


@pytest.mark.parametrize("table", metadata.sorted_tables, ids=lambda t: t.name)
async def test_the_fast_path_writes_and_reads_every_column_as_sqlalchemy_does(
    store: Store, table: Table
) -> None:
    async with store.database.transaction() as conn:
        if table.name == "endpoints":
            await conn.execute(schools.insert(), row_values(schools, 0, with_nulls=False))
        for with_nulls, numbers in ((False, (10, 11, 12)), (True, (13, 14, 15))):
            await insert_three_times(
                conn, table, [row_values(table, n, with_nulls=with_nulls) for n in numbers]
            )

    everything = select(table).order_by(*table.primary_key)
    async with store.database.transaction(read_only=True) as conn:
        expected = await conn.run_sync(lambda c: [tuple(row) for row in c.execute(everything)])
        assert not isinstance(await conn.execute(everything), FastResult)
        fast = await conn.execute(everything)
        assert isinstance(fast, FastResult)
        got = list(fast)
    assert len(got) >= 6
    # Equal values of equal types: repr tells a bool from an int, and one tzinfo from another.
    assert repr([tuple(row) for row in got]) == repr(expected)
    keys = list(everything.selected_columns.keys())
    assert [row._mapping for row in got] == [dict(zip(keys, row, strict=True)) for row in expected]
    assert [getattr(row, keys[-1]) for row in got] == [row[-1] for row in expected]

    # What the driver stored is what SQLAlchemy stored for the same values: rows 10 and 12
    # (SQLAlchemy, fast path), and 13 and 15 (nulls) have the same moments, bytes, booleans.
    if not processed_columns(table):
        return  # strings and integers only (rate_limits): nothing a processor changes
    raw = select(*(table.c[name] for name in processed_columns(table)))
    raw = raw.order_by(*table.primary_key)
    async with store.database.transaction(read_only=True) as conn:
        stored = await conn.run_sync(
            lambda c: c.exec_driver_sql(str(raw.compile(dialect=c.dialect))).fetchall()
        )
    ours = stored[-6:]
    assert ours[0] == ours[2]
    assert ours[3] == ours[5]


async def test_the_fast_path_raises_what_sqlalchemy_raises(store: Store) -> None:
    statement = schools.insert()
    for number in (1, 2):
        async with store.database.transaction() as conn:
            result = await conn.execute(statement, row_values(schools, number, with_nulls=True))
    assert isinstance(result, FastResult)
    # A duplicate key: the repositories rely on IntegrityError for idempotency races.
    again = [row_values(schools, 3, with_nulls=True), row_values(schools, 1, with_nulls=True)]
    with pytest.raises(IntegrityError):
        await insert_in_one_transaction(store, statement, again)
    # The failed transaction left nothing, and the store works on.
    by_brin = select(schools.c.brin).order_by(schools.c.brin)
    async with store.database.transaction(read_only=True) as conn:
        await conn.execute(by_brin)
        assert (await conn.execute(by_brin)).scalars() == ["1bri", "2bri"]
    if store.database.dialect == "postgresql":
        # SQLSTATE 22 (a value too long for its column): about the data, not the store, and
        # the same exception on both paths (asyncpg's errors reach SQLAlchemy's DBAPIError).
        too_long = {**row_values(schools, 4, with_nulls=True), "brin": "TOO LONG"}
        raised = []
        for path in (schools.insert(), statement):  # SQLAlchemy's, the fast path
            with pytest.raises(DBAPIError) as caught:
                await insert_in_one_transaction(store, path, [too_long])
            raised.append((type(caught.value), type(caught.value.orig), caught.value.orig.sqlstate))
        assert raised[0] == raised[1]
        assert raised[1][2] == "22001"


async def insert_in_one_transaction(store: Store, statement: Any, rows: list[Any]) -> None:
    async with store.database.transaction() as conn:
        for values in rows:
            await conn.execute(statement, values)


def hot_statements() -> list[tuple[str, Any]]:
    """The statements of every session's open and close, as the repositories build them."""
    from traffic_center.store.audit import _HotStatements
    from traffic_center.store.certificates import CertificateRepository
    from traffic_center.store.rate_limits import RateLimitRepository
    from traffic_center.store.registry import RegistryRepository
    from traffic_center.store.sessions import SessionRepository

    class Dialect:
        dialect = "postgresql"

    found: list[tuple[str, Any]] = []
    for repository in (
        SessionRepository(Dialect()),  # type: ignore[arg-type]
        RegistryRepository(Dialect()),  # type: ignore[arg-type]
        CertificateRepository(Dialect()),  # type: ignore[arg-type]
        RateLimitRepository(Dialect()),  # type: ignore[arg-type]
        _HotStatements(),
    ):
        found += [
            (f"{type(repository).__name__}.{name}", value)
            for name, value in vars(repository).items()
            if isinstance(value, Executable)
        ]
    return found


@pytest.mark.parametrize("dialect", [sqlite.dialect(), asyncpg.dialect()], ids=["sqlite", "pg"])
@pytest.mark.parametrize(
    ("name", "statement"), [pytest.param(*found, id=found[0]) for found in hot_statements()]
)
def test_every_hot_statement_runs_on_the_fast_path(dialect: Any, name: str, statement: Any) -> None:
    """A Python-side default, or an IN list of the caller's, would quietly send a hot
    statement back through SQLAlchemy; this says which one."""
    if isinstance(statement, Insert) and not statement._values:
        table = statement.table
        keys = [c.name for c in table.columns if c is not table.autoincrement_column]
    else:
        keys = list(statement.compile(dialect=dialect).params)
    compiled = compile_for_driver(statement, dict.fromkeys(keys), dialect)
    assert compiled is not None, name
    assert "?" in compiled.sql or "$" in compiled.sql or not keys
