"""Hot statements compiled once by SQLAlchemy, then run on the driver itself (issue 14).

SQLAlchemy Core's execution costs ~30 µs of Python per statement around a driver call of
1-3 µs (sqlite3) and, on PostgreSQL, adds a greenlet bridge around asyncpg. A repository
builds its hot statements once with bindparam()s and passes only values, so the second time
a statement comes by it is compiled once, for the database's dialect, into what the driver
needs: the SQL text, the order of its positional parameters with their bind processors
(UtcDateTime, DateTime on SQLite...), and its result columns with SQLAlchemy's own result
processors. The SQL stays defined once, in SQLAlchemy Core; a value comes back exactly as
SQLAlchemy would have handed it back (a test pins that for every column type).

Only what this module can run faithfully is compiled: anything else (a statement built per
call, Python-side defaults, parameters it would have to expand per call, duplicate column
names) keeps going through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any]
# One positional value from the caller's parameters: read one key, process it.
_Argument = Callable[[Mapping[str, Any]], Any]


class CompiledStatement:
    """One statement as its driver runs it: SQL, argument order, result processing."""

    def __init__(
        self,
        sql: str,
        arguments: Sequence[_Argument],
        result_keys: Sequence[str],
        result_processors: Sequence[Processor | None],
    ) -> None:
        self.sql = sql
        self._arguments = tuple(arguments)
        self.returns_rows = bool(result_keys)
        self._row_type = _row_type(tuple(result_keys))
        self._processed = [(i, p) for i, p in enumerate(result_processors) if p is not None]

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The driver's positional arguments for these values."""
        return [argument(parameters) for argument in self._arguments]

    def result(self, raw_rows: Sequence[Sequence[Any]], rowcount: int) -> FastResult:
        """The driver's rows as the repositories read SQLAlchemy's."""
        row_type, processed = self._row_type, self._processed
        if not processed:
            return FastResult([row_type(raw) for raw in raw_rows], rowcount)
        rows = []
        for raw in raw_rows:
            values = list(raw)
            for index, process in processed:
                values[index] = process(values[index])
            rows.append(row_type(values))
        return FastResult(rows, rowcount)


_ByKeys = dict[frozenset[str], CompiledStatement | None]


class StatementCache:
    """Compiled statements of one database (one dialect), keyed by the statement object.

    A statement is compiled the second time it comes by: one built per call never comes by
    twice, so it costs nothing here and its entry goes with it.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        # By id(): a WeakKeyDictionary makes a weak reference at every lookup. The weak
        # reference kept with each entry removes it when its statement goes.
        self._seen: dict[int, tuple[weakref.ref[Executable], _ByKeys]] = {}

    def get(self, statement: Executable, parameters: Mapping[str, Any]) -> CompiledStatement | None:
        """The compiled form, or None: let SQLAlchemy run it (first sight, or unsupported)."""
        entry = self._seen.get(id(statement))
        if entry is None or entry[0]() is not statement:
            self._remember(statement)
            return None
        by_keys = entry[1]
        keys = frozenset(parameters)
        try:
            return by_keys[keys]
        except KeyError:
            compiled = by_keys[keys] = compile_for_driver(statement, parameters, self._dialect)
            return compiled

    def _remember(self, statement: Executable) -> None:
        key = id(statement)
        seen = self._seen

        def forget(_gone: object) -> None:
            seen.pop(key, None)

        # Not weakly referable: nothing to key it on, and SQLAlchemy runs it every time.
        with contextlib.suppress(TypeError):
            seen[key] = (weakref.ref(statement, forget), {})


def compile_for_driver(
    statement: Executable, parameters: Mapping[str, Any], dialect: Dialect
) -> CompiledStatement | None:
    """``statement`` compiled once for ``dialect``; None when only SQLAlchemy can run it."""
    if not isinstance(statement, ClauseElement):
        return None
    compiled = statement.compile(dialect=dialect, column_keys=sorted(parameters))
    if not isinstance(compiled, SQLCompiler) or not _runs_as_compiled(compiled, parameters):
        return None
    # Expands an IN of constants (sessions' open states) into its placeholders once; also
    # checks that every required bindparam has a value, as SQLAlchemy would.
    expanded = compiled.construct_expanded_state(dict(parameters))
    arguments = [
        _argument(compiled, name, expanded.parameters, parameters, dialect)
        for name in expanded.positiontup or ()
    ]
    columns = compiled._result_columns  # (key, name, objects, type): SQLAlchemy's own
    keys = [column[0] for column in columns]
    if len(set(keys)) != len(keys):
        return None  # SQLAlchemy would refuse an ambiguous name; let it
    processors = [column[3]._cached_result_processor(dialect, None) for column in columns]
    return CompiledStatement(expanded.statement, arguments, keys, processors)


def _runs_as_compiled(compiled: SQLCompiler, parameters: Mapping[str, Any]) -> bool:
    """Whether the compiled SQL and constants hold for every execution with these keys."""
    if not compiled.positional or compiled.escaped_bind_names:
        return False
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.literal_execute_params:
        return False  # Python-side defaults, or values rendered into the SQL per call
    if any(bind.key in parameters for bind in compiled.post_compile_params):
        return False  # an IN list of the caller's: its placeholders vary per call
    return not any(bind.callable is not None for bind in compiled.binds.values())


def _argument(
    compiled: SQLCompiler,
    name: str,
    expanded: Mapping[str, Any],
    parameters: Mapping[str, Any],
    dialect: Dialect,
) -> _Argument:
    bind = compiled.binds.get(name)
    if bind is not None and bind.key in parameters:
        key = bind.key
        process = bind.type._cached_bind_processor(dialect)
        if process is None:
            return lambda values: values[key]
        return lambda values: process(values[key])
    # A constant of the statement (``audit_head.id == 1``, an IN list's item): processed once.
    value = expanded[name]
    bind_type = bind.type if bind is not None else _expanded_type(compiled, name)
    process_constant: Processor | None = bind_type._cached_bind_processor(dialect)
    constant = process_constant(value) if process_constant is not None else value
    return lambda _values: constant


def _expanded_type(compiled: SQLCompiler, name: str) -> Any:
    """The type of an item of an expanded IN list (``state_1_1`` of ``state_1``)."""
    for bind in compiled.post_compile_params:
        if name.startswith(f"{compiled.bind_names[bind]}_"):
            return bind.type
    raise LookupError(name)


class FastRow(tuple[Any, ...]):
    """A row as SQLAlchemy's Row is read here: by index, attribute and ``_mapping``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


def _row_type(keys: tuple[str, ...]) -> type[FastRow]:
    index = {key: i for i, key in enumerate(keys)}
    return type("FastRow", (FastRow,), {"__slots__": (), "_fields": keys, "_index": index})


class FastResult:
    """The result of one statement on the fast path, with the part of SQLAlchemy's
    CursorResult API the repositories use; every row is already fetched."""

    def __init__(self, rows: list[FastRow], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._next = 0

    # Rows are typed Any to the repositories, as a join with SQLAlchemy's Row would be.
    def __iter__(self) -> Iterator[Any]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return iter(rows)

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def all(self) -> list[Any]:
        return list(self)

    def first(self) -> Any:
        row = self.fetchone()
        self._next = len(self._rows)
        return row

    def one(self) -> Any:
        rows = self.all()
        if len(rows) != 1:
            _wrong_count(rows)
        return rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self]


def _wrong_count(rows: list[Any]) -> NoReturn:
    if not rows:
        raise NoResultFound("No row was found when one was required")
    raise MultipleResultsFound("Multiple rows were found when exactly one was required")
