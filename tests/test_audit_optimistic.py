"""Optimistic appends on PostgreSQL (issue 14): each one statement that writes its records
only if the chain's head is still the one its process expects, else answers the head it
found; after a few misses the locked transaction. Two stores (two nodes or workers) on one
database, interleaved and concurrent, give one chain with every record exactly once. Batches of
every size chain in order on both backends (SQLite writes them in chunks of a few sizes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import DatabaseFactory
from tests.test_audit import SECRET
from traffic_center.audit.verify import verify_chain
from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.store.audit import _OPTIMISTIC_MISSES
from traffic_center.store.store import Store

KEY = SECRET.encode()


def a_record(
    n: int, *, type: AuditType = AuditType.SESSION, phase: Phase = Phase.FINAL
) -> AuditRecord:
    return AuditRecord(
        type=type,
        transaction_id=str(uuid.uuid4()),
        recorded_at=dt.datetime.now(dt.UTC),
        result="SessieToegekend",
        http_status=201,
        doel_routeringskenmerk=f"{n:020d}",
        phase=phase,
        node_id="node-test",
    )


def its_final(started: AuditRecord) -> AuditRecord:
    return dataclasses.replace(
        started, phase=Phase.FINAL, result="OverdrachtGeslaagd", recorded_at=dt.datetime.now(dt.UTC)
    )


class Attempts:
    """Counts one store's optimistic statements and how many found the head moved."""

    def __init__(self, store: Store) -> None:
        self.sent = 0
        self.missed = 0
        audit = store.audit
        self._send = audit._append_if_head
        audit._append_if_head = self._counted  # type: ignore[method-assign]

    async def _counted(self, *args: Any, **kwargs: Any) -> Any:
        self.sent += 1
        found = await self._send(*args, **kwargs)
        self.missed += found is not None
        return found


@pytest.fixture
async def two_stores(database_factory: DatabaseFactory) -> Any:
    url = await database_factory("postgresql")
    stores = [await Store.open(url), await Store.open(url)]
    yield stores
    for store in stores:
        await store.close()


async def chained_ids(store: Store) -> list[str]:
    return [item.record.transaction_id async for item in store.audit.walk()]


async def assert_one_chain(store: Store, records: Sequence[AuditRecord]) -> None:
    chain = [(item.record.transaction_id, item.record.phase) async for item in store.audit.walk()]
    assert sorted(chain) == sorted((r.transaction_id, r.phase) for r in records)
    assert len(set(chain)) == len(chain)
    verdict = await verify_chain(store, KEY)
    assert (verdict.broken, verdict.checked) == (None, len(records))
    assert (await store.audit.head()).count == len(records)


async def test_interleaved_appends_of_two_stores_miss_and_chain_on_the_head_found(
    two_stores: list[Store],
) -> None:
    """Each append of one store comes after one of the other: its expected head is stale
    every time, so it misses once, learns the head from the answer and lands."""
    attempts = [Attempts(store) for store in two_stores]
    records = []
    for n in range(10):
        for index, store in enumerate(two_stores):
            batch = [a_record(100 * index + 10 * n + i) for i in range(1 + n % 3)]
            await store.audit.append_all(batch, secret=KEY)
            records += batch
    await assert_one_chain(two_stores[0], records)
    # Each store's first append reads the head; every later one missed once; none fell back.
    assert [a.missed for a in attempts] == [9, 9]
    assert [a.sent - a.missed for a in attempts] == [10, 10]


async def test_concurrent_appends_of_two_stores_give_one_chain(two_stores: list[Store]) -> None:
    records: list[list[AuditRecord]] = [[], []]

    async def appending(index: int) -> None:
        store = two_stores[index]
        for n in range(25):
            batch = [a_record(1000 * index + 10 * n + i) for i in range(1 + n % 4)]
            await store.audit.append_all(batch, secret=KEY)
            records[index] += batch
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for index in (0, 1):
            group.start_soon(appending, index)
    await assert_one_chain(two_stores[1], records[0] + records[1])


async def test_an_append_that_keeps_missing_falls_back_to_the_locked_transaction(
    two_stores: list[Store],
) -> None:
    """The other store writes before each of this one's statements: after the misses the
    locked transaction writes the record all the same, on the head as it is."""
    this, other = two_stores
    written = []
    send = this.audit._append_if_head

    async def after_the_other(*args: Any, **kwargs: Any) -> Any:
        record = a_record(len(written))
        await other.audit.append(record, secret=KEY)
        written.append(record)
        return await send(*args, **kwargs)

    this.audit._append_if_head = after_the_other  # type: ignore[method-assign]
    record = a_record(999)
    await this.audit.append(record, secret=KEY)
    assert len(written) == _OPTIMISTIC_MISSES
    await assert_one_chain(other, [*written, record])
    # The locked transaction's head is the one expected next: straight in, no miss.
    this.audit._append_if_head = send  # type: ignore[method-assign]
    attempts = Attempts(this)
    later = a_record(1000)
    await this.audit.append(later, secret=KEY)
    assert (attempts.sent, attempts.missed) == (1, 0)
    await assert_one_chain(other, [*written, record, later])


async def test_open_exchanges_are_tracked_as_one_record_at_a_time_would(
    two_stores: list[Store],
) -> None:
    """A started record opens its exchange, its final closes it, also within one batch and
    after a miss."""
    this, other = two_stores
    dossier = AuditType.DOSSIER
    open_then_closed, stays_open = (a_record(n, type=dossier, phase=Phase.STARTED) for n in (1, 2))
    in_one_batch = a_record(3, type=dossier, phase=Phase.STARTED)
    first = [open_then_closed, stays_open, in_one_batch, its_final(in_one_batch)]
    await this.audit.append_all(first, secret=KEY)
    assert await this.audit.open_count() == 2
    between = a_record(4)
    await other.audit.append(between, secret=KEY)  # this store's next append misses
    attempts = Attempts(this)
    closing = [a_record(5), its_final(open_then_closed)]
    await this.audit.append_all(closing, secret=KEY)
    assert (attempts.sent, attempts.missed) == (2, 1)
    orphans = await this.audit.orphans(silent_since=dt.datetime.now(dt.UTC))
    assert [(o.record.transaction_id, o.record.phase, o.node_id) for o in orphans] == [
        (stays_open.transaction_id, Phase.STARTED, "node-test")
    ]
    await assert_one_chain(this, [*first, between, *closing])


async def test_batches_of_every_size_chain_in_order_and_sqlite_builds_five_inserts(
    store: Store,
) -> None:
    """Batches of 1 to 40 records, on each backend: all chained once, in order. On SQLite a
    batch goes in chunks of 16, 8, 4, 2 and 1 rows, so five INSERTs are built (and compiled),
    not one per batch size: compiling one of 16-32 rows took the event loop 5-15 ms."""
    records: list[AuditRecord] = []
    for size in range(1, 41):
        batch = [a_record(100 * size + i) for i in range(size)]
        await store.audit.append_all(batch, secret=KEY)
        records += batch
    assert await chained_ids(store) == [record.transaction_id for record in records]
    verdict = await verify_chain(store, KEY)
    assert (verdict.broken, verdict.checked) == (None, len(records))
    built = set(store.audit._hot._insert_records)
    if store.database.dialect == "sqlite":
        assert built == {16, 8, 4, 2, 1}
