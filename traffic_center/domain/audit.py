"""The audit record and its hash chain: metadata only, never a payload, zoeksleutel or PGN.

Every record carries ``hash = HMAC-SHA256(secret, prev_hash ‖ canonical JSON of the record)``,
where ``prev_hash`` is the previous record's hash (``GENESIS_HASH`` for the first). Editing a
record breaks its own hash; deleting or reordering records breaks the next ``prev_hash``;
deleting the newest ones is caught by the chain head the store keeps beside the records.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.errors import WeakSecret
from traffic_center.domain.results import ResultCode

GENESIS_HASH = "0" * 64


class AuditType(StrEnum):
    # exchanges (the OSO messages, by their OSO names)
    SESSION = "overdrachtRequest"
    CHECK = "sessiecontroleRequest"
    DOSSIER = "documentRequest"
    CLOSE = "afmeldingRequest"
    NOTIFICATION = "meldenNotificatieRequest"
    # The SWV flow (docs/rules.md, rule 10): a school's notification to its SWV, which issues a
    # koppelsleutel, and the SWV's feedback to the school.
    SWV_NOTIFICATION = "meldenNotificatieRequestSwv"
    FEEDBACK = "meldenTerugkoppelingRequest"
    ENDPOINT_OVERVIEW = "overzichtAanleverpuntRequest"
    AUDIT_READ = "auditOpvraag"  # a party reading its own records (GET /v1/audit)
    REFUSED_CALLER = "aanroepGeweigerd"
    # administration
    CERTIFICATE_ISSUED = "certificaatUitgegeven"
    CERTIFICATE_REVOKED = "certificaatIngetrokken"
    SCHOOL_CHANGED = "schoolGewijzigd"
    ENDPOINT_CHANGED = "aanleverpuntGewijzigd"
    KEY_ROTATED = "sleutelGewisseld"  # subject: the key id that signs from the next record on


class Phase(StrEnum):
    """Relays and notifications are recorded twice: before the first byte and after the last."""

    STARTED = "started"  # written before anything is forwarded: the fail-closed proof
    FINAL = "final"  # the outcome; the only phase of every other record


# Recorded in two phases, started and final (see Phase).
TWO_PHASE_TYPES = frozenset(
    {AuditType.DOSSIER, AuditType.NOTIFICATION, AuditType.SWV_NOTIFICATION, AuditType.FEEDBACK}
)

# Results besides the OSO codes and the error codes.
DOEL_DISCONNECTED = "AfgebrokenDoorDoel"  # the doel hung up during the stream
# The relay cut off by the Traffic Center's own limits (docs/security.md): the doel did not read
# within the write timeout, or the whole relay passed its total deadline.
DOEL_STOPPED_READING = "DoelLeestNiet"
RELAY_DEADLINE_PASSED = "OverdrachtTeLang"
DONE = "Uitgevoerd"  # an administrative action that was carried out
SESSION_GRANTED = "SessieToegekend"  # overdrachtRequest answered with a session
INTERNAL_ERROR = "InterneFout"  # an unexpected error: answered 500
STARTED = "Gestart"  # the result of a started record: the outcome follows in a final one
# A started exchange whose node died before its final record: closed by a surviving node.
INCOMPLETE = "Onvolledig"

# How a relayed dossier can fail mid-stream, besides the error tree's LAS-side codes
# (``UpstreamFailure``): the bron's stream broke off, the node's own limits cut it, or a bug.
# traffic_center_upstream_errors_total counts them with those codes.
RELAY_FAILURES = frozenset(
    {
        ResultCode.OVERDRACHT_MISLUKT.value,
        DOEL_STOPPED_READING,
        RELAY_DEADLINE_PASSED,
        INTERNAL_ERROR,
    }
)


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
    phase: Phase = Phase.FINAL
    key_id: str | None = None  # the key the record's hash is made with (its id, not the key)
    node_id: str | None = None  # the node (process) that wrote it


# Fields added after records were first chained: left out of the canonical form while they
# hold their default, so records written before them still verify.
_OPTIONAL_FIELDS = {"phase": Phase.FINAL, "key_id": None, "node_id": None}
KEY_ID_LABEL = b"traffic-center/audit-key-id/v1"


MIN_SECRET_BYTES = 32
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def check_strength(secret: bytes, *, origin: str) -> bytes:
    """Refuse a secret that cannot hold 32 random bytes; the text itself is the HMAC key.

    Accepted forms: at least 64 hex digits (``openssl rand -hex 32``) or at least 43 base64 or
    base64url characters (``openssl rand -base64 32``). A long run of few distinct characters
    (``aaaa…``, ``0000…``) is refused too: it is a placeholder, not a key.
    """
    text = secret.decode("ascii", errors="replace").strip()
    if not _strong(text):
        raise WeakSecret(f"{origin} is too weak: {WeakSecret.title}")
    return text.encode()


def _strong(text: str) -> bool:
    if len(set(text)) < 10:
        return False
    if _HEX.fullmatch(text):
        return len(text) >= 2 * MIN_SECRET_BYTES
    if not _BASE64.fullmatch(text):
        return False
    padded = text.replace("-", "+").replace("_", "/")
    padded += "=" * (-len(padded) % 4)
    try:
        return len(base64.b64decode(padded, validate=True)) >= MIN_SECRET_BYTES
    except binascii.Error:
        return False


def key_id(secret: bytes) -> str:
    """A public name for a secret: records and errors name the key without revealing it."""
    return hmac.new(secret, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ChainedRecord:
    """A record as stored: its position and its place in the chain."""

    id: int
    record: AuditRecord
    prev_hash: str
    hash: str


def canonical_json(record: AuditRecord) -> bytes:
    """One byte string per record, independent of the database that stored it."""
    values: dict[str, object] = {}
    for name in _FIELD_NAMES:  # dataclasses.fields() builds its tuple anew at every call
        value = getattr(record, name)
        if value is None:  # most fields: nothing to convert (isinstance is slow on enums)
            if _OPTIONAL_FIELDS.get(name, _NOT_OPTIONAL) is not None:
                values[name] = None
            continue
        if name in _OPTIONAL_FIELDS and value == _OPTIONAL_FIELDS[name]:
            continue
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        values[name] = value
    return _CANONICAL.encode(values).encode()


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(AuditRecord))
_NOT_OPTIONAL = object()
# json.dumps with these options, its encoder made once rather than at every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(secret: bytes, prev_hash: str, record: AuditRecord) -> str:
    return hmac.new(secret, prev_hash.encode() + canonical_json(record), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    record_id: int | None  # None: the records are intact but the head says more existed
    transaction_id: str | None
    reason: str


class KeyRing:
    """The secrets a verifier may need, by key id: the current one and any rotated out."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self.current = current
        self.current_id = key_id(current)
        self._by_id = {key_id(secret): secret for secret in (*previous, current)}

    def get(self, wanted: str | None) -> Sequence[bytes]:
        """The secret for a key id; for a record from before key ids, every candidate."""
        if wanted is None:
            return [self.current, *(s for s in self._by_id.values() if s != self.current)]
        found = self._by_id.get(wanted)
        return [found] if found is not None else []

    def __contains__(self, wanted: object) -> bool:
        return wanted in self._by_id


class ChainVerifier:
    """Checks records fed in chain order; made for a walk over a log too big to hold."""

    def __init__(self, keys: KeyRing | bytes, *, start_hash: str = GENESIS_HASH) -> None:
        self._keys = keys if isinstance(keys, KeyRing) else KeyRing(keys)
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
        candidates = self._keys.get(item.record.key_id)
        if not candidates:
            return ChainBreak(
                item.id,
                item.record.transaction_id,
                f"it is signed with key {item.record.key_id}, which was not given to the verifier "
                "(TC_PREVIOUS_SECRET_KEYS)",
            )
        if all(chain_hash(s, item.prev_hash, item.record) != item.hash for s in candidates):
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
