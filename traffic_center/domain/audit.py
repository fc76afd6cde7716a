"""The audit record and its hash chain: metadata only, never a payload, zoeksleutel or PGN.

Every record carries ``hash = HMAC-SHA256(secret, prev_hash ‖ canonical JSON of the record)``,
where ``prev_hash`` is the previous record's hash (``GENESIS_HASH`` for the first). Editing a
record breaks its own hash; deleting or reordering records breaks the next ``prev_hash``;
deleting the newest ones is caught by the chain head the store keeps beside the records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum

GENESIS_HASH = "0" * 64


class AuditType(StrEnum):
    # exchanges (the OSO messages, by their OSO names)
    SESSION = "overdrachtRequest"
    CHECK = "sessiecontroleRequest"
    DOSSIER = "documentRequest"
    CLOSE = "afmeldingRequest"
    NOTIFICATION = "meldenNotificatieRequest"
    REFUSED_CALLER = "aanroepGeweigerd"
    # administration
    CERTIFICATE_ISSUED = "certificaatUitgegeven"
    CERTIFICATE_REVOKED = "certificaatIngetrokken"
    SCHOOL_CHANGED = "schoolGewijzigd"
    ENDPOINT_CHANGED = "aanleverpuntGewijzigd"


# Results besides the OSO codes and the error codes.
DOEL_DISCONNECTED = "AfgebrokenDoorDoel"  # the doel hung up during the stream
DONE = "Uitgevoerd"  # an administrative action that was carried out
SESSION_GRANTED = "SessieToegekend"  # overdrachtRequest answered with a session
INTERNAL_ERROR = "InterneFout"  # an unexpected error: answered 500


@dataclass(frozen=True, slots=True)
class AuditRecord:
    type: AuditType
    transaction_id: str
    recorded_at: dt.datetime
    # What the Traffic Center answered, or for an administrative action, the OSO or error code.
    result: str
    http_status: int | None = None
    request_id: str | None = None
    caller_serial: str | None = None  # None for an administrative action from the CLI
    subject: str | None = None  # what an administrative action changed: a serial, BRIN, …
    sessie_id: str | None = None
    doel_brin: str | None = None
    doel_routeringskenmerk: str | None = None
    bron_brin: str | None = None
    bron_routeringskenmerk: str | None = None
    # What the LAS on the other side answered; None when it was never reached.
    upstream_status: int | None = None
    request_in: dt.datetime | None = None
    forwarded_at: dt.datetime | None = None
    response_in: dt.datetime | None = None
    response_out: dt.datetime | None = None
    size_bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ChainedRecord:
    """A record as stored: its position and its place in the chain."""

    id: int
    record: AuditRecord
    prev_hash: str
    hash: str


def canonical_json(record: AuditRecord) -> bytes:
    """One byte string per record, independent of the database that stored it."""
    values = {}
    for field in dataclasses.fields(AuditRecord):
        value = getattr(record, field.name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        values[field.name] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(secret: bytes, prev_hash: str, record: AuditRecord) -> str:
    return hmac.new(secret, prev_hash.encode() + canonical_json(record), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    record_id: int | None  # None: the records are intact but the head says more existed
    transaction_id: str | None
    reason: str


class ChainVerifier:
    """Checks records fed in chain order; made for a walk over a log too big to hold."""

    def __init__(self, secret: bytes, *, start_hash: str = GENESIS_HASH) -> None:
        self._secret = secret
        self._expected_prev = start_hash
        self._last_id = 0
        self.count = 0

    def feed(self, item: ChainedRecord) -> ChainBreak | None:
        self.count += 1
        if item.prev_hash != self._expected_prev:
            return ChainBreak(
                item.id,
                item.record.transaction_id,
                "does not follow the record before it (one was deleted, inserted or moved)",
            )
        if chain_hash(self._secret, item.prev_hash, item.record) != item.hash:
            return ChainBreak(
                item.id, item.record.transaction_id, "its content does not match its hash (edited)"
            )
        self._expected_prev, self._last_id = item.hash, item.id
        return None

    def finish(self, *, head_id: int, head_hash: str) -> ChainBreak | None:
        """After the last record: the chain must end where its head says it does."""
        if (self._last_id, self._expected_prev) != (head_id, head_hash):
            return ChainBreak(
                None,
                None,
                f"the chain ends at record {self._last_id}, but its head names record {head_id} "
                "(the newest records were deleted)",
            )
        return None
