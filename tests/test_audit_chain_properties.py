"""The audit chain verifier, by property: any single edit, deletion, swap or truncation of a
chain of random records is caught, and an untouched chain always verifies."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from traffic_center.domain.audit import (
    GENESIS_HASH,
    AuditRecord,
    AuditType,
    ChainBreak,
    ChainedRecord,
    ChainVerifier,
    chain_hash,
)

SECRET = b"s" * 32

records = st.builds(
    AuditRecord,
    type=st.sampled_from(AuditType),
    transaction_id=st.uuids().map(str),
    recorded_at=st.datetimes(
        min_value=dt.datetime(2020, 1, 1),
        max_value=dt.datetime(2040, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    result=st.sampled_from(["OverdrachtGeslaagd", "DossierNogNietGereed", "Uitgevoerd"]),
    http_status=st.none() | st.sampled_from([200, 201, 403, 502]),
    caller_serial=st.none() | st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=40),
    size_bytes=st.none() | st.integers(min_value=0, max_value=2**40),
    sha256=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)


def chained(items: Sequence[AuditRecord]) -> list[ChainedRecord]:
    chain, prev = [], GENESIS_HASH
    for number, record in enumerate(items, start=1):
        item = ChainedRecord(number, record, prev, chain_hash(SECRET, prev, record))
        chain.append(item)
        prev = item.hash
    return chain


def verify(chain: Sequence[ChainedRecord], head: ChainedRecord | None) -> ChainBreak | None:
    """What `audit verify` does: walk in order, then hold the end against the stored head."""
    verifier = ChainVerifier(SECRET)
    for item in chain:
        if (broken := verifier.feed(item)) is not None:
            return broken
    if head is None:
        return verifier.finish(head_id=0, head_hash=GENESIS_HASH)
    return verifier.finish(head_id=head.id, head_hash=head.hash)


# Edits that change a record's content: each gives a different canonical form.
EDITS: dict[str, Callable[[AuditRecord], AuditRecord]] = {
    "result": lambda r: dataclasses.replace(r, result=r.result + "!"),
    "transaction_id": lambda r: dataclasses.replace(r, transaction_id=r.transaction_id[::-1] + "x"),
    "recorded_at": lambda r: dataclasses.replace(
        r, recorded_at=r.recorded_at + dt.timedelta(microseconds=1)
    ),
    "size_bytes": lambda r: dataclasses.replace(r, size_bytes=(r.size_bytes or 0) + 1),
    "sha256": lambda r: dataclasses.replace(
        r, sha256="0" * 64 if r.sha256 != "0" * 64 else "1" * 64
    ),
    "caller_serial": lambda r: dataclasses.replace(
        r, caller_serial=None if r.caller_serial else "ABC"
    ),
}

chains = st.lists(records, min_size=1, max_size=12).map(chained)


@given(st.lists(records, max_size=12).map(chained))
def test_an_untouched_chain_verifies(chain: list[ChainedRecord]) -> None:
    assert verify(chain, chain[-1] if chain else None) is None


@given(chains, st.data(), st.sampled_from(sorted(EDITS)), st.booleans())
def test_any_edit_is_caught(
    chain: list[ChainedRecord], data: st.DataObject, field: str, rehashed: bool
) -> None:
    head = chain[-1]
    index = data.draw(st.integers(0, len(chain) - 1), label="edited")
    edited = EDITS[field](chain[index].record)
    # Rehashed: an insider who holds the secret rewrites the record's own hash too; then the
    # next record's link (or, for the newest record, the head) gives it away.
    new_hash = chain_hash(SECRET, chain[index].prev_hash, edited) if rehashed else chain[index].hash
    chain[index] = dataclasses.replace(chain[index], record=edited, hash=new_hash)
    broken = verify(chain, head)
    assert broken is not None
    if not rehashed:
        assert broken.record_id == chain[index].id
        assert "edited" in broken.reason


@given(chains, st.data())
def test_any_deletion_is_caught(chain: list[ChainedRecord], data: st.DataObject) -> None:
    head = chain[-1]
    index = data.draw(st.integers(0, len(chain) - 1), label="deleted")
    del chain[index]
    broken = verify(chain, head)
    assert broken is not None
    expected_at = chain[index].id if index < len(chain) else None  # the newest: by the head
    assert broken.record_id == expected_at


@given(st.lists(records, min_size=2, max_size=12).map(chained), st.data())
def test_any_swap_is_caught(chain: list[ChainedRecord], data: st.DataObject) -> None:
    head = chain[-1]
    i = data.draw(st.integers(0, len(chain) - 2), label="first")
    j = data.draw(st.integers(i + 1, len(chain) - 1), label="second")
    # The rows keep their ids (the walk order); their contents trade places.
    chain[i], chain[j] = (
        dataclasses.replace(chain[j], id=chain[i].id),
        dataclasses.replace(chain[i], id=chain[j].id),
    )
    broken = verify(chain, head)
    assert broken is not None
    assert broken.record_id == chain[i].id


@given(chains, st.data())
def test_any_truncation_is_caught_by_the_head(
    chain: list[ChainedRecord], data: st.DataObject
) -> None:
    head = chain[-1]
    kept = data.draw(st.integers(0, len(chain) - 1), label="kept")
    broken = verify(chain[:kept], head)
    assert broken is not None
    assert broken.record_id is None
    assert f"names record {head.id}" in broken.reason
