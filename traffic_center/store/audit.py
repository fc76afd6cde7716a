"""The audit log in the store: chained appends under the head's lock, reads for verify and API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import CTE, Select
from sqlalchemy.types import String, TypeEngine

from traffic_center.domain.audit import (
    TWO_PHASE_TYPES,
    AuditRecord,
    AuditType,
    ChainedRecord,
    Phase,
    chain_hash,
    key_id,
)
from traffic_center.domain.errors import AuditKeyMismatch
from traffic_center.store.database import Database, StoreConnection
from traffic_center.store.schema import audit_head, audit_open, audit_records, nodes

_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(AuditRecord))
_INSERTED_COLUMNS = (*_RECORD_FIELDS, "prev_hash", "hash")
_BATCH = 1000
# Optimistic appends on PostgreSQL that may find the head moved before one falls back to
# the locked transaction (so every append gets through, however busy the other nodes are).
_OPTIMISTIC_MISSES = 3


@dataclass(frozen=True, slots=True)
class ChainHead:
    last_id: int
    last_hash: str
    count: int
    key_id: str | None = None  # the key that must sign the next record; None before key ids


@dataclass(frozen=True, slots=True)
class _ChainedBatch:
    """Records signed and chained on a head, as the rows of one INSERT."""

    rows: list[dict[str, Any]]
    signed: list[AuditRecord]
    last_hash: str  # the head after them
    chain_key: str | None  # the key that signs the record after them


@dataclass(frozen=True, slots=True)
class OpenExchange:
    """A started record without its final one, and the node that started it."""

    record: AuditRecord
    node_id: str


class AuditRepository:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._hot = _HotStatements()
        # The head (hash, key id) this process last wrote or saw: what an optimistic append
        # on PostgreSQL chains on (``_append_if_head``); read at the first.
        self._expected: tuple[str, str | None] | None = None

    @property
    def optimistic(self) -> bool:
        """Whether appends are optimistic, each one statement that writes only if the head
        is still the one this process expects (PostgreSQL): then two of one process in
        flight at once would miss each other, and one at a time gathers the rest."""
        return self._db.dialect == "postgresql"

    async def append(self, record: AuditRecord, *, secret: bytes) -> bool:
        """Add the record at the end of the chain; one writer at a time holds the head.
        Whether this call wrote it: False when it was in the log already.

        Idempotent: a retry after a commit whose answer was lost finds the record in place,
        as does a node closing an orphan another node closed first (audit/nodes.py).
        The record is signed with ``secret`` and names its key id; AuditKeyMismatch when the
        chain's head says another key signs the next record (nothing is written then).
        """
        try:
            await self._append_records((record,), secret=secret)
        except IntegrityError:
            if not await self.holds(record):
                raise
            return False
        return True

    async def append_all(self, records: Sequence[AuditRecord], *, secret: bytes) -> None:
        """``append`` for several records in one transaction (the trail's group commit,
        issue 14): the head locked once, each record chained on the one before it, the head
        advanced once. All or nothing: an IntegrityError (one is in the log already, after a
        lost commit) or an AuditKeyMismatch is the caller's to sort out record by record.

        On PostgreSQL first optimistically, one statement at a time (``_append_if_head``);
        after a few misses, in the locked transaction that always gets through."""
        await self._append_records(records, secret=secret)

    async def _append_records(self, records: Sequence[AuditRecord], *, secret: bytes) -> None:
        if not records:
            return
        if self.optimistic:
            expected = self._expected
            if expected is None:
                read = await self.head()
                expected = (read.last_hash, read.key_id)
            for _attempt in range(_OPTIMISTIC_MISSES):
                try:
                    found = await self._append_if_head(records, expected, secret=secret)
                except AuditKeyMismatch:
                    break  # maybe only against a stale head: the locked head decides
                if found is None:
                    return
                expected = self._expected = found
        async with self._db.transaction() as conn:
            head = await self.append_all_in(conn, records, secret=secret)
        self._expected = head

    async def _append_if_head(
        self, records: Sequence[AuditRecord], expected: tuple[str, str | None], *, secret: bytes
    ) -> tuple[str, str | None] | None:
        """The records chained on the ``expected`` head (hash, key id), in one autocommit
        statement that writes them only if the head is still that one: None when it was
        (the head is then theirs, ``self._expected``), else the head it found.

        The head's row lock is held only while the statement runs, not across the round
        trips and the event loop's turns of a transaction: on PostgreSQL with two workers
        every append queued on it, five backends waiting at a time (issue 14)."""
        expected_hash, expected_key = expected
        batch = _chain(records, expected_hash, expected_key, secret=secret)
        values = {
            **_columnwise(batch.rows),
            "expected_hash": expected_hash,
            "expected_key_id": expected_key,
            "new_last_hash": batch.last_hash,
            "new_key_id": batch.chain_key,
            "added": len(batch.rows),
        }
        async with self._db.transaction(single_statement=True) as conn:
            returned = (await conn.execute(self._hot.append_if_head(), values)).all()
        if returned[0].id is None:  # the head moved: chain on the one it is now
            return str(returned[0].head_hash), returned[0].head_key_id
        self._expected = (batch.last_hash, batch.chain_key)
        _ids_in_order(returned, batch.signed)
        return None

    async def append_in(self, conn: StoreConnection, record: AuditRecord, *, secret: bytes) -> None:
        """``append`` inside the caller's write transaction (``Store.count_and_start``); an
        IntegrityError there is the caller's to judge with ``holds``."""
        await self.append_all_in(conn, (record,), secret=secret)

    async def append_all_in(
        self, conn: StoreConnection, records: Sequence[AuditRecord], *, secret: bytes
    ) -> tuple[str, str | None]:
        """The records chained in order under one lock of the head, in the caller's write
        transaction; the head (hash, key id) after them. Each must be signed by the key the
        chain names at its place: a KEY_ROTATED record hands the next one to its new key."""
        hot = self._hot
        head = (await conn.execute(hot.locked_head)).one()
        batch = _chain(records, str(head.last_hash), head.key_id, secret=secret)
        rows, signed_records = batch.rows, batch.signed
        if not rows:
            return str(head.last_hash), head.key_id
        head_values = {
            "new_last_hash": batch.last_hash,
            "new_key_id": batch.chain_key,
            "added": len(rows),
        }
        # One INSERT for the whole batch: a round trip, not one per record, with the head's
        # lock held (on PostgreSQL each waits for a busy event loop to come by as well). On
        # PostgreSQL the head advances in the same statement (a data-modifying CTE; SQLite
        # has none), one round trip fewer (issue 14). SQLite has no round trips: there a
        # batch goes in chunks of a few sizes (``_in_chunks``), each size compiled once.
        if self._db.dialect == "postgresql":
            inserted = await conn.execute(
                hot.insert_and_advance(len(rows)), {**_numbered(rows), **head_values}
            )
            ids = _ids_in_order(inserted.all(), signed_records)
        else:
            returned: list[Any] = []
            for chunk in _in_chunks(rows):
                inserted = await conn.execute(hot.insert_records(len(chunk)), _numbered(chunk))
                returned.extend(inserted.all())
            ids = _ids_in_order(returned, signed_records)
            await conn.execute(hot.advance_head, {"new_last_id": ids[-1], **head_values})
        for signed, record_id in zip(signed_records, ids, strict=True):
            await _track_open(conn, hot, signed, record_id)
        return batch.last_hash, batch.chain_key

    async def holds(self, record: AuditRecord) -> bool:
        """Whether the record is in the log already: an append retried after a commit whose
        answer was lost finds it there (what makes an append idempotent)."""
        return await self.by_transaction(record.transaction_id, phase=record.phase) is not None

    async def probe_write(self, now: dt.datetime, *, secret: bytes | None) -> None:
        """Prove the log can be written right now (fail closed), adding nothing; with a
        secret, also that it is the key that signs the chain."""
        async with self._db.transaction() as conn:
            # One statement: the update takes the head's lock and answers its key.
            signing_key = (await conn.execute(self._hot.probe_head, {"probed": now})).scalar_one()
        if secret is not None:
            _ensure_signing_key(signing_key, key_id(secret))

    @staticmethod
    def ensure_signing_key(chain_key: str | None, *, secret: bytes) -> None:
        """AuditKeyMismatch unless ``secret`` signs the chain whose head names ``chain_key``
        (read with an admission's count, ``Store.count_and_probe``).

        A read, not ``probe_write``'s update: that took the chain head's row lock, which every
        append takes too, so on PostgreSQL each admission queued behind the appends of all
        nodes (issue 14)."""
        _ensure_signing_key(chain_key, key_id(secret))

    async def head(self) -> ChainHead:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._hot.head)).one()
        values = row._mapping
        return ChainHead(
            int(values["last_id"]),
            str(values["last_hash"]),
            int(values["count"]),
            values["key_id"],
        )

    async def last(self) -> ChainedRecord | None:
        """The newest record, if any."""
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(audit_records).order_by(audit_records.c.id.desc()).limit(1)
                )
            ).first()
        return _chained(row._mapping) if row else None

    # --- open exchanges and the nodes that hold them ---------------------------------------

    async def heartbeat(self, node_id: str, *, hostname: str, now: dt.datetime) -> None:
        """This node is alive; a write, so it also proves the store writable."""
        async with self._db.transaction() as conn:
            updated = await conn.execute(
                update(nodes).where(nodes.c.node_id == node_id).values(heartbeat_at=now)
            )
            if not updated.rowcount:
                await conn.execute(
                    insert(nodes).values(
                        node_id=node_id, hostname=hostname, started_at=now, heartbeat_at=now
                    )
                )

    async def orphans(self, *, silent_since: dt.datetime, limit: int = 100) -> list[OpenExchange]:
        """Open exchanges whose node has not beaten since ``silent_since`` (or never did)."""
        query = (
            select(audit_records, audit_open.c.node_id.label("open_node_id"))
            .select_from(
                audit_open.join(
                    audit_records, audit_records.c.id == audit_open.c.record_id
                ).outerjoin(nodes, nodes.c.node_id == audit_open.c.node_id)
            )
            .where(or_(nodes.c.node_id.is_(None), nodes.c.heartbeat_at < silent_since))
            .order_by(audit_open.c.record_id)
            .limit(limit)
        )
        async with self._db.transaction(read_only=True) as conn:
            rows = list(await conn.execute(query))
        return [
            OpenExchange(_record(row._mapping), str(row._mapping["open_node_id"])) for row in rows
        ]

    async def open_count(self) -> int:
        async with self._db.transaction(read_only=True) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(audit_open))).scalar_one()
            )

    async def forget_silent_nodes(self, *, silent_since: dt.datetime) -> None:
        """Nodes gone for good and holding nothing open: out of the table."""
        async with self._db.transaction() as conn:
            await conn.execute(
                delete(nodes).where(
                    nodes.c.heartbeat_at < silent_since,
                    ~select(audit_open.c.transaction_id)
                    .where(audit_open.c.node_id == nodes.c.node_id)
                    .exists(),
                )
            )

    async def walk(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        up_to_id: int | None = None,
    ) -> AsyncIterator[ChainedRecord]:
        """Every record in chain order, read in batches (the log may be large)."""
        after = 0
        while True:
            query = select(audit_records).where(audit_records.c.id > after)
            if up_to_id is not None:
                query = query.where(audit_records.c.id <= up_to_id)
            if since is not None:
                query = query.where(audit_records.c.recorded_at >= since)
            if until is not None:
                query = query.where(audit_records.c.recorded_at < until)
            async with self._db.transaction(read_only=True) as conn:
                rows = list(await conn.execute(query.order_by(audit_records.c.id).limit(_BATCH)))
            for row in rows:
                yield _chained(row._mapping)
            if len(rows) < _BATCH:
                return
            after = int(rows[-1].id)

    async def by_transaction(
        self, transaction_id: str, *, phase: Phase = Phase.FINAL
    ) -> AuditRecord | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    self._hot.by_transaction,
                    {"match_transaction_id": transaction_id, "match_phase": phase.value},
                )
            ).first()
        return _record(row._mapping) if row else None

    async def delivered_in(self, sessie_id: str) -> bool:
        """Whether a complete dossier was relayed in this session (what a close is held to)."""
        async with self._db.transaction(read_only=True) as conn:
            found = await conn.execute(self._hot.delivered_in, {"match_sessie_id": sessie_id})
            return found.first() is not None

    async def relayed_in(self, sessie_id: str) -> bool:
        """Whether any dossier relay was started in this session."""
        async with self._db.transaction(read_only=True) as conn:
            found = await conn.execute(self._hot.relayed_in, {"match_sessie_id": sessie_id})
            return found.first() is not None

    async def relay_open_in(self, sessie_id: str) -> bool:
        """Whether a dossier relay in this session has started and not yet ended (on any node)."""
        async with self._db.transaction(read_only=True) as conn:
            found = await conn.execute(self._hot.relay_open_in, {"match_sessie_id": sessie_id})
            return found.first() is not None

    async def for_session(self, sessie_id: str) -> Sequence[AuditRecord]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(self._hot.for_session, {"match_sessie_id": sessie_id})
            return [_record(row._mapping) for row in rows]

    async def for_party(
        self,
        routeringskenmerk: str,
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
        after_id: int,
        limit: int,
    ) -> Sequence[ChainedRecord]:
        """Records where the endpoint is doel or bron, oldest first, after a cursor."""
        conditions = [
            audit_records.c.id > after_id,
            or_(
                audit_records.c.doel_routeringskenmerk == routeringskenmerk,
                audit_records.c.bron_routeringskenmerk == routeringskenmerk,
            ),
        ]
        if since is not None:
            conditions.append(audit_records.c.recorded_at >= since)
        if until is not None:
            conditions.append(audit_records.c.recorded_at < until)
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(
                select(audit_records)
                .where(and_(*conditions))
                .order_by(audit_records.c.id)
                .limit(limit)
            )
            return [_chained(row._mapping) for row in rows]

    async def count(self) -> int:
        async with self._db.transaction(read_only=True) as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(audit_records))).scalar_one()
            )


def _chain(
    records: Sequence[AuditRecord], last_hash: str, chain_key: str | None, *, secret: bytes
) -> _ChainedBatch:
    """The records signed with ``secret`` and chained in order on the head ``last_hash``,
    whose next record ``chain_key`` signs; AuditKeyMismatch when that is another key."""
    signing_key = key_id(secret)
    rows, signed_records = [], []
    for record in records:
        signed = dataclasses.replace(record, key_id=signing_key)
        _ensure_signing_key(chain_key, signing_key)
        record_hash = chain_hash(secret, last_hash, signed)
        rows.append({**_columns(signed), "prev_hash": last_hash, "hash": record_hash})
        signed_records.append(signed)
        last_hash = record_hash
        # A rotation record is the old key's last: from here on the new key signs.
        chain_key = signed.subject if signed.type is AuditType.KEY_ROTATED else signing_key
    return _ChainedBatch(rows, signed_records, last_hash, chain_key)


# The largest chunk of a batch's INSERT on SQLite (a power of two, as are all chunks).
_LARGEST_CHUNK = 16


def _in_chunks(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    """``rows`` in order, in chunks of 16, 8, 4, 2 and 1 rows (largest first): five sizes of
    INSERT, not one per batch size (up to 64). Each size of statement is run once through
    SQLAlchemy and compiled for the driver the next time (``store/compiled.py``), 5-15 ms
    of the event loop for one of 16-32 rows: paid again for every new batch size, it was
    felt in the first hundreds of relays under load (issue 14)."""
    start = 0
    size = _LARGEST_CHUNK
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start : start + size]
        start += size


def _numbered(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch's rows as the parameters of ``insert_records``: each key with the row's index."""
    return {
        f"{name}_{index}": value for index, row in enumerate(rows) for name, value in row.items()
    }


def _unbounded(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """A string column's type without its length, for the array a batch comes in: a cast
    to VARCHAR(n)[] would cut a value that is too long, where the INSERT into the column
    refuses it (and the trail sets that record aside, its hash intact)."""
    return String() if isinstance(column_type, String) else column_type


def _columnwise(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """A batch's rows as the parameters of ``append_if_head``: one list per column."""
    return {f"{name}_rows": [row[name] for row in rows] for name in _INSERTED_COLUMNS}


def _ids_in_order(returned: Sequence[Any], records: Sequence[AuditRecord]) -> list[int]:
    """Each record's id, in the batch's order; they must ascend in it, as the chain is walked
    by id. A database assigns them in the order of the VALUES, but does not promise so: if
    one ever did not, the transaction is undone (the trail then appends one at a time)."""
    by_record = {(row.transaction_id, row.phase): int(row.id) for row in returned}
    ids = [by_record[(record.transaction_id, record.phase.value)] for record in records]
    if any(later <= earlier for earlier, later in itertools.pairwise(ids)):
        raise RuntimeError(f"the store numbered a batch of audit records out of order: {ids}")
    return ids


def _ensure_signing_key(chain_key: str | None, signing_key: str | None) -> None:
    """AuditKeyMismatch unless ``signing_key`` signs the chain's next record."""
    if chain_key is not None and chain_key != signing_key:
        raise AuditKeyMismatch(
            f"this secret has key id {signing_key}; the audit log is signed with {chain_key}"
        )


async def _track_open(
    conn: StoreConnection, hot: _HotStatements, record: AuditRecord, record_id: int
) -> None:
    if record.phase is Phase.STARTED:
        await conn.execute(
            hot.open_exchange,
            {
                "transaction_id": record.transaction_id,
                "node_id": record.node_id or "",
                "record_id": record_id,
                "started_at": record.recorded_at,
            },
        )
    elif record.type in TWO_PHASE_TYPES:
        await conn.execute(hot.close_exchange, {"match_transaction_id": record.transaction_id})


class _HotStatements:
    """The statements of every exchange's records, built once per repository with
    bindparam()s for the values: an execution only fills them in, and SQLAlchemy's compiled
    cache hits (constructing them anew was a tenth of a session's CPU, issue 14)."""

    def __init__(self) -> None:
        the_head = audit_head.c.id == 1
        by_session = audit_records.c.sessie_id == bindparam("match_sessie_id")
        dossier = audit_records.c.type == AuditType.DOSSIER.value
        self.head = select(audit_head).where(the_head)
        # FOR UPDATE on PostgreSQL; on SQLite the IMMEDIATE transaction already excludes
        # every other writer.
        self.locked_head = self.head.with_for_update()
        self.probe_head = (
            update(audit_head)
            .where(the_head)
            .values(probed_at=bindparam("probed"))
            .returning(audit_head.c.key_id)
        )
        self.advance_head = (
            update(audit_head)
            .where(the_head)
            .values(
                last_id=bindparam("new_last_id"),
                last_hash=bindparam("new_last_hash"),
                count=audit_head.c.count + bindparam("added"),
                key_id=bindparam("new_key_id"),
            )
        )
        self._the_head = the_head
        self._insert_records: dict[int, Insert] = {}
        self._insert_and_advance: dict[int, Select[Any]] = {}
        self._append_if_head: Select[Any] | None = None
        self.open_exchange = insert(audit_open)
        self.close_exchange = delete(audit_open).where(
            audit_open.c.transaction_id == bindparam("match_transaction_id")
        )
        self.by_transaction = select(audit_records).where(
            audit_records.c.transaction_id == bindparam("match_transaction_id"),
            audit_records.c.phase == bindparam("match_phase"),
        )
        self.delivered_in = (
            select(audit_records.c.id)
            .where(
                by_session,
                dossier,
                audit_records.c.phase == Phase.FINAL.value,
                audit_records.c.result == "OverdrachtGeslaagd",
            )
            .limit(1)
        )
        self.relayed_in = (
            select(audit_records.c.id)
            .where(by_session, dossier, audit_records.c.phase == Phase.STARTED.value)
            .limit(1)
        )
        self.relay_open_in = (
            select(audit_records.c.id)
            .join(audit_open, audit_open.c.transaction_id == audit_records.c.transaction_id)
            .where(by_session, dossier, audit_records.c.phase == Phase.STARTED.value)
            .limit(1)
        )
        self.for_session = select(audit_records).where(by_session).order_by(audit_records.c.id)

    def insert_records(self, count: int) -> Insert:
        """One INSERT of ``count`` rows, its values named ``{column}_{row}`` (``_numbered``);
        built once per size, so each size is compiled once."""
        statement = self._insert_records.get(count)
        if statement is None:
            columns = [audit_records.c[name] for name in (*_RECORD_FIELDS, "prev_hash", "hash")]
            rows = [
                {c.name: bindparam(f"{c.name}_{index}", type_=c.type) for c in columns}
                for index in range(count)
            ]
            statement = self._insert_records[count] = (
                insert(audit_records)
                .values(rows)
                .returning(
                    audit_records.c.id, audit_records.c.transaction_id, audit_records.c.phase
                )
            )
        return statement

    def insert_and_advance(self, count: int) -> Select[Any]:
        """``insert_records`` and ``advance_head`` in one statement (PostgreSQL): the head
        moves to the batch's highest id, which ``_ids_in_order`` holds to be its last."""
        statement = self._insert_and_advance.get(count)
        if statement is None:
            inserted = self.insert_records(count).cte("inserted")
            advanced = self._head_advanced_past(inserted)
            built: Select[Any] = select(
                inserted.c.id, inserted.c.transaction_id, inserted.c.phase
            ).add_cte(advanced)
            statement = self._insert_and_advance[count] = built
        return statement

    def _head_advanced_past(self, inserted: CTE, *only_if: ColumnElement[bool]) -> CTE:
        """The head moved to the highest id of ``inserted`` (which ``_ids_in_order`` holds to
        be the batch's last), its hash, count and key from the bind parameters."""
        return (
            update(audit_head)
            .where(self._the_head, *only_if)
            .values(
                last_id=select(func.max(inserted.c.id)).scalar_subquery(),
                last_hash=bindparam("new_last_hash"),
                count=audit_head.c.count + bindparam("added"),
                key_id=bindparam("new_key_id"),
            )
            .cte("advanced")
        )

    def append_if_head(self) -> Select[Any]:
        """The records inserted, the head advanced and the open exchanges tracked, in one
        statement (PostgreSQL), only if the head is still ``expected_hash`` and
        ``expected_key_id``. It answers the records' ids (and the head before them), or one
        row without an id and with the head as it is. The records come as one array per
        column (``_columnwise``): one statement, compiled and prepared once, for any batch.

        The head CTE locks the row FOR UPDATE; under READ COMMITTED one that another append
        changed meanwhile is read again once it commits, so the check sees the newest head.
        The other parts read the statement's snapshot, taken before that wait: enough, as
        an exchange's started record (its open row) commits before its final record exists.
        """
        if self._append_if_head is None:
            self._append_if_head = self._built_append_if_head()
        return self._append_if_head

    def _built_append_if_head(self) -> Select[Any]:
        head = (
            select(audit_head.c.last_hash, audit_head.c.key_id)
            .where(self._the_head)
            .with_for_update()
            .cte("head")
        )
        still_expected = and_(
            head.c.last_hash == bindparam("expected_hash", type_=audit_head.c.last_hash.type),
            head.c.key_id.is_not_distinct_from(
                bindparam("expected_key_id", type_=audit_head.c.key_id.type)
            ),
        )
        columns = [audit_records.c[name] for name in _INSERTED_COLUMNS]
        given = (
            func.unnest(
                *(
                    bindparam(f"{c.name}_rows", type_=postgresql.ARRAY(_unbounded(c.type)))
                    for c in columns
                )
            )
            .table_valued(*(c.name for c in columns), with_ordinality="ordinality")
            .render_derived(name="given")
        )
        rows = (
            select(*(given.c[c.name] for c in columns))
            .select_from(given.join(head, true()))
            .where(still_expected)
            .order_by(given.c.ordinality)  # the ids ascend in the batch's order
        )
        inserted = (
            insert(audit_records)
            .from_select(columns, rows)
            .returning(
                audit_records.c.id,
                audit_records.c.transaction_id,
                audit_records.c.phase,
                audit_records.c.type,
                audit_records.c.node_id,
                audit_records.c.recorded_at,
            )
            .cte("inserted")
        )
        # Constants named apart from the rows' values (``phase_1`` would be both).
        started: BindParameter[str] = bindparam("started_phase", Phase.STARTED.value)
        two_phase: BindParameter[list[str]] = bindparam(
            "two_phase_types", sorted(t.value for t in TWO_PHASE_TYPES), expanding=True
        )
        # ``_track_open`` in the same statement. Its parts do not see each other's rows, so a
        # started record closed later in the batch gets no open row to delete.
        closing = inserted.alias("closing")
        closed_later = (
            select(closing.c.id)
            .where(
                closing.c.transaction_id == inserted.c.transaction_id,
                closing.c.id > inserted.c.id,
                closing.c.phase != started,
                closing.c.type.in_(two_phase),
            )
            .exists()
        )
        opened = (
            insert(audit_open)
            .from_select(
                ["transaction_id", "node_id", "record_id", "started_at"],
                select(
                    inserted.c.transaction_id,
                    func.coalesce(inserted.c.node_id, literal("")),
                    inserted.c.id,
                    inserted.c.recorded_at,
                ).where(inserted.c.phase == started, ~closed_later),
            )
            .cte("opened")
        )
        closed = (
            delete(audit_open)
            .where(
                audit_open.c.transaction_id.in_(
                    select(inserted.c.transaction_id).where(
                        inserted.c.phase != started, inserted.c.type.in_(two_phase)
                    )
                )
            )
            .cte("closed")
        )
        advanced = self._head_advanced_past(inserted, select(inserted.c.id).exists())
        return (
            select(
                inserted.c.id,
                inserted.c.transaction_id,
                inserted.c.phase,
                head.c.last_hash.label("head_hash"),
                head.c.key_id.label("head_key_id"),
            )
            .select_from(head.outerjoin(inserted, true()))
            .add_cte(opened, closed, advanced)
        )


def _columns(record: AuditRecord) -> dict[str, Any]:
    columns = {name: getattr(record, name) for name in _RECORD_FIELDS}
    columns["type"] = record.type.value
    columns["phase"] = record.phase.value
    return columns


def _record(row: Any) -> AuditRecord:
    values = {name: row[name] for name in _RECORD_FIELDS}
    values["type"] = AuditType(row["type"])
    values["phase"] = Phase(row["phase"])
    return AuditRecord(**values)


def _chained(row: Any) -> ChainedRecord:
    return ChainedRecord(int(row["id"]), _record(row), str(row["prev_hash"]), str(row["hash"]))
