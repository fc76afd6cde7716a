"""Group commit of the audit trail (issue 14): records of one process that arrive while an
append transaction is in flight are written together in the next one, under one lock of
the chain's head; the chain, the outbox, set-aside records and key rotation behave as they
did one record at a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import BACKENDS, DatabaseFactory
from tests.test_audit import SECRET
from traffic_center.api.problems import status_for
from traffic_center.audit.admin import AdminAudit
from traffic_center.audit.trail import MAX_BATCH, AuditTrail
from traffic_center.audit.verify import verify_chain
from traffic_center.domain.audit import (
    INCOMPLETE,
    STARTED,
    AuditRecord,
    AuditType,
    KeyRing,
    Phase,
    key_id,
)
from traffic_center.domain.errors import StoreUnavailable
from traffic_center.observability.metrics import Metrics
from traffic_center.store.store import Store

KEY = SECRET.encode()
RECORDS = 40


def a_record(n: int) -> AuditRecord:
    now = dt.datetime.now(dt.UTC)
    return AuditRecord(
        type=AuditType.SESSION,
        transaction_id=str(uuid.uuid4()),
        recorded_at=now,
        result="SessieToegekend",
        http_status=201,
        doel_routeringskenmerk=f"{n:020d}",
    )


def trail_on(store: Store, secret: bytes = KEY) -> tuple[AuditTrail, Metrics]:
    metrics = Metrics(CollectorRegistry())
    trail = AuditTrail(
        store,
        secret=secret,
        metrics=metrics,
        clock=lambda: dt.datetime.now(dt.UTC),
        status_for=status_for,
    )
    return trail, metrics


@contextmanager
def write_transactions(store: Store) -> Iterator[list[str]]:
    """Every write transaction the store runs meanwhile (its ``observe`` hook)."""
    seen: list[str] = []
    store.database.observe = lambda kind, _seconds: seen.append(kind) if kind == "write" else None
    try:
        yield seen
    finally:
        store.database.observe = None


class SlowAudit:
    """The seam between trail and store: each append takes a round trip's time (so appends
    overlap on SQLite too, whose transactions never leave the event loop), and while
    ``down`` the store is unavailable. Records how many records each append carried."""

    def __init__(self, store: Store) -> None:
        self.down = False
        # While closed, appends wait at the seam (``all_at_once`` opens it once all queued).
        self.gate: anyio.Event | None = None
        self.batches: list[int] = []
        self._append = store.audit.append
        self._append_all = store.audit.append_all
        store.audit.append = self.append  # type: ignore[method-assign]
        store.audit.append_all = self.append_all  # type: ignore[method-assign]

    async def append(self, record: AuditRecord, *, secret: bytes) -> None:
        await self._through(1, lambda: self._append(record, secret=secret))

    async def append_all(self, records: Sequence[AuditRecord], *, secret: bytes) -> None:
        await self._through(len(records), lambda: self._append_all(records, secret=secret))

    async def _through(self, count: int, write: Callable[[], Awaitable[None]]) -> None:
        self.batches.append(count)
        if self.gate is not None:
            await self.gate.wait()
        await anyio.sleep(0.005)
        if self.down:
            raise StoreUnavailable("the store did not answer: OSError")
        await write()


async def all_at_once(
    trail: AuditTrail, records: Sequence[AuditRecord], seam: SlowAudit | None = None
) -> None:
    """Each record from its own task, started in order (as concurrent requests). With a
    seam, the appends first in flight wait there until the others have all queued (on a
    busy machine starting the tasks may take longer than an append)."""
    if seam is not None and seam.gate is None:
        seam.gate = anyio.Event()
    async with anyio.create_task_group() as group:
        for record in records:
            group.start_soon(trail.record, record)
            await anyio.lowlevel.checkpoint()
        if seam is not None:
            try:
                await queued(trail, len(records) - trail.max_in_flight)
            finally:  # never leave the shielded appends waiting at the gate
                seam.gate.set()
                seam.gate = None


async def queued(trail: AuditTrail, count: int) -> None:
    """Until ``count`` records wait in the trail's queue (bounded)."""
    with anyio.fail_after(10):
        # Polled: the trail has no event for "queued" (nor should it, for a test).
        while len(trail._queued) < count:  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def chained_ids(store: Store) -> list[str]:
    return [item.record.transaction_id async for item in store.audit.walk()]


@pytest.fixture
async def store_on(database_factory: DatabaseFactory) -> Any:
    opened: list[Store] = []

    async def open_store(url: str) -> Store:
        store = await Store.open(url)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


StoreOpener = Callable[[str], Awaitable[Store]]


async def test_concurrent_records_on_postgresql_share_transactions_and_chain(
    database_factory: DatabaseFactory, store_on: StoreOpener
) -> None:
    """No seam: real concurrency against PostgreSQL, where an append waits on the network."""
    store = await store_on(await database_factory("postgresql"))
    trail, _ = trail_on(store)
    records = [a_record(n) for n in range(RECORDS)]
    with write_transactions(store) as writes:
        await all_at_once(trail, records)
    assert trail.pending == 0
    assert len(writes) < RECORDS, writes
    assert (await store.audit.head()).count == RECORDS
    assert sorted(await chained_ids(store)) == sorted(r.transaction_id for r in records)
    assert (await verify_chain(store, KEY)).broken is None


async def test_records_of_requests_ready_together_on_sqlite_share_a_transaction(
    database_factory: DatabaseFactory, store_on: StoreOpener
) -> None:
    """No seam: SQLite's transactions never leave the event loop, so appends never overlap;
    the records of requests that run in the same pass of the loop (as those of connections
    that became readable together do) are gathered into one transaction all the same."""
    store = await store_on(await database_factory("sqlite"))
    trail, _ = trail_on(store)
    records = [a_record(n) for n in range(RECORDS)]
    with write_transactions(store) as writes:
        async with anyio.create_task_group() as group:
            for record in records:
                group.start_soon(trail.record, record)
    assert writes == ["write"]
    assert trail.pending == 0
    assert await chained_ids(store) == [r.transaction_id for r in records]
    assert (await verify_chain(store, KEY)).broken is None

    # A record on its own is written in one pass of the loop, alone.
    alone = a_record(RECORDS)
    with write_transactions(store) as writes:
        await trail.record(alone)
    assert writes == ["write"]
    assert (await chained_ids(store))[-1] == alone.transaction_id


@pytest.mark.parametrize("backend", BACKENDS)
async def test_records_that_arrive_during_an_append_go_in_the_next_one_in_order(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    store = await store_on(await database_factory(backend))
    seam = SlowAudit(store)
    trail, _ = trail_on(store)
    records = [a_record(n) for n in range(MAX_BATCH + 20)]
    one_caller = [a_record(n) for n in range(1000, 1010)]

    async def in_turn() -> None:
        for record in one_caller:
            await trail.record(record)

    seam.gate = anyio.Event()  # the one caller's first record waits there too
    with write_transactions(store) as writes:
        async with anyio.create_task_group() as group:
            group.start_soon(in_turn)
            group.start_soon(all_at_once, trail, records, seam)
    records += one_caller
    # The first alone (as many as may be in flight: one on SQLite, whose transactions never
    # overlap, and on PostgreSQL, whose optimistic appends of one process would chain on the
    # same head); the rest as they queued behind them, no batch above the bound.
    in_flight = trail.max_in_flight
    assert in_flight == 1
    assert seam.batches[:in_flight] == [1] * in_flight
    assert max(seam.batches) == MAX_BATCH
    assert sum(seam.batches) == len(records)
    assert len(writes) == len(seam.batches) < len(records) / 4
    assert trail.pending == 0
    chain = await chained_ids(store)
    assert sorted(chain) == sorted(r.transaction_id for r in records)
    # One caller's records in the order it made them.
    assert [t for t in chain if t in {r.transaction_id for r in one_caller}] == [
        r.transaction_id for r in one_caller
    ]
    head = await store.audit.head()
    assert (head.count, head.key_id) == (len(records), key_id(KEY))
    assert (await verify_chain(store, KEY)).broken is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_batch_in_an_outage_waits_in_the_outbox_and_lands_later_in_order(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    store = await store_on(await database_factory(backend))
    seam = SlowAudit(store)
    trail, metrics = trail_on(store)
    seam.down = True
    records = [a_record(n) for n in range(RECORDS)]
    await all_at_once(trail, records, seam)
    assert max(seam.batches) > 1  # a batch of several met the outage
    assert trail.pending == RECORDS
    assert not trail.writable
    assert metrics.audit_outbox_pending._value.get() == RECORDS
    assert (await store.audit.head()).count == 0
    waiting = [r.transaction_id for r in trail._pending]
    assert sorted(waiting) == sorted(r.transaction_id for r in records)

    seam.down = False
    later = a_record(RECORDS)
    await trail.record(later)  # behind the waiting ones
    assert trail.pending == 0
    assert trail.writable
    assert metrics.audit_outbox_pending._value.get() == 0
    assert await chained_ids(store) == [*waiting, later.transaction_id]
    assert (await verify_chain(store, KEY)).broken is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_record_the_store_refuses_does_not_set_aside_its_batch(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    store = await store_on(await database_factory(backend))
    seam = SlowAudit(store)
    trail, metrics = trail_on(store)
    records = [a_record(n) for n in range(RECORDS)]
    # No time: refused by both stores (NOT NULL), for what it holds, not for being away.
    unfit = dataclasses.replace(records[RECORDS // 2], recorded_at=None)  # type: ignore[arg-type]
    records[RECORDS // 2] = unfit
    await all_at_once(trail, records, seam)
    assert max(seam.batches) > 1
    assert trail.pending == 0
    assert trail.writable
    assert metrics.audit_write_failures._value.get() == 1
    good = [r.transaction_id for r in records if r is not unfit]
    assert sorted(await chained_ids(store)) == sorted(good)
    assert (await verify_chain(store, KEY)).broken is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_key_rotation_amid_concurrent_records_ends_their_batch(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    """A KEY_ROTATED record hands the chain to the new key: what the old key's trail queued
    behind it is not written (it waits, AuditKeyMismatch), what came before is; the chain
    verifies across the hand-over, and the new key's trail goes on."""
    store = await store_on(await database_factory(backend))
    seam = SlowAudit(store)
    old, _ = trail_on(store)
    new_key = secrets.token_hex(32).encode()
    records = [a_record(n) for n in range(RECORDS)]
    rotation = dataclasses.replace(
        records[10], type=AuditType.KEY_ROTATED, subject=key_id(new_key), result="Uitgevoerd"
    )
    records[10] = rotation
    await all_at_once(old, records, seam)
    # The batch after the first ones in flight ends at the rotation.
    assert 10 - old.max_in_flight + 1 in seam.batches
    chain = await chained_ids(store)
    assert chain[-1] == rotation.transaction_id  # nothing of the old key's after it
    assert len(chain) + old.pending == RECORDS
    assert old.writable is (old.pending == 0)

    new, _ = trail_on(store, new_key)
    after = [a_record(n) for n in range(RECORDS, RECORDS + 10)]
    await all_at_once(new, after)
    assert new.pending == 0
    assert (await store.audit.head()).key_id == key_id(new_key)
    verdict = await verify_chain(store, KeyRing(new_key, [KEY]))
    assert (verdict.broken, verdict.checked) == (None, len(chain) + len(after))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_rotation_by_the_cli_during_concurrent_records_still_verifies(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    store = await store_on(await database_factory(backend))
    trail, _ = trail_on(store)
    new_key = secrets.token_hex(32).encode()
    records = [a_record(n) for n in range(RECORDS)]

    async def rotate() -> None:
        await anyio.sleep(0.01)
        await AdminAudit(store, secret=KEY, clock=lambda: dt.datetime.now(dt.UTC)).record(
            AuditType.KEY_ROTATED, key_id(new_key)
        )

    async with anyio.create_task_group() as group:
        group.start_soon(all_at_once, trail, records)
        group.start_soon(rotate)
    head = await store.audit.head()
    # Every record landed before the rotation or waits for the new key; none was lost.
    assert head.count - 1 + trail.pending == RECORDS
    assert head.key_id == key_id(new_key)
    verdict = await verify_chain(store, KeyRing(new_key, [KEY]))
    assert (verdict.broken, verdict.checked) == (None, head.count)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_nodes_appending_at_once_give_one_chain(
    database_factory: DatabaseFactory, store_on: StoreOpener, backend: str
) -> None:
    """Two nodes (or workers): each its own store connections and its own trail."""
    url = await database_factory(backend)
    stores = [await store_on(url), await store_on(url)]
    trails = [trail_on(store)[0] for store in stores]
    records = [[a_record(n) for n in range(node * 100, node * 100 + RECORDS)] for node in (0, 1)]
    async with anyio.create_task_group() as group:
        for trail, own in zip(trails, records, strict=True):
            group.start_soon(all_at_once, trail, own)
    assert [trail.pending for trail in trails] == [0, 0]
    chain = await chained_ids(stores[0])
    assert sorted(chain) == sorted(r.transaction_id for own in records for r in own)
    assert (await verify_chain(stores[0], KEY)).broken is None


async def test_an_orphan_two_nodes_close_is_counted_and_logged_by_the_first_alone(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Every node sweeps the same orphans: both may find one open and close it. The log
    holds one final record (the second append finds it in place), and only the node whose
    append wrote it counts it and logs it, so the exchanges metric summed over the nodes and
    the log say one close, once."""
    started = dataclasses.replace(
        a_record(1), type=AuditType.DOSSIER, phase=Phase.STARTED, result=STARTED, node_id="dead"
    )
    assert await store.audit.append(started, secret=KEY)
    final = dataclasses.replace(started, phase=Phase.FINAL, result=INCOMPLETE, node_id=None)
    (first, first_metrics), (second, second_metrics) = trail_on(store), trail_on(store)
    caplog.set_level(logging.INFO, logger="traffic_center.audit")
    assert await first.close_orphan(dataclasses.replace(final, node_id="a")) is True
    assert await second.close_orphan(dataclasses.replace(final, node_id="b")) is False
    counted = [
        metrics.exchanges.labels(type=AuditType.DOSSIER.value, result=INCOMPLETE)._value.get()
        for metrics in (first_metrics, second_metrics)
    ]
    assert counted == [1.0, 0.0]
    lines = [r for r in caplog.records if started.transaction_id in r.getMessage()]
    assert len(lines) == 1  # one exchange line
    assert (await store.audit.by_transaction(started.transaction_id)).node_id == "a"
