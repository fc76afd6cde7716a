"""The one schema, as SQLAlchemy Core tables; migrations in ``migrations/`` create it."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("routeringskenmerk", String(20), nullable=True, index=True),
    Column("subject", Text, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revocation_reason", String(32), nullable=True),
)

schools = Table(
    "schools",
    metadata,
    Column("brin", String(4), primary_key=True),
    Column("name", Text, nullable=False),
    Column("sector", String(8), nullable=False),
    Column("board", Text, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("routeringskenmerk", String(20), primary_key=True),
    Column("brin", String(4), ForeignKey("schools.brin"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("sessie_id", String(36), primary_key=True),
    Column("doel_brin", String(4), nullable=False),
    Column("doel_routeringskenmerk", String(20), nullable=False),
    Column("doel_sector", String(8), nullable=False),
    Column("bron_brin", String(4), nullable=False),
    Column("bron_routeringskenmerk", String(20), nullable=True),
    Column("overdrachtsoort", String(32), nullable=False),
    # Rule 7: only a keyed hash of the zoeksleutel/koppelsleutel, never the value.
    Column("search_key_hmac", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("result", String(40), nullable=True),
    Column("result_routeringskenmerk", String(20), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_fingerprint", String(64), nullable=True),
    # A retry with the same key from the same doel endpoint finds the first session. Its
    # index, led by doel_routeringskenmerk, is also the one for a doel's sessions: a
    # separate one (and one on bron_brin, which nothing reads) cost every session's write
    # two more B-trees (migration 0007).
    UniqueConstraint("doel_routeringskenmerk", "idempotency_key", name="uq_sessions_idempotency"),
)

# The SWV flow's triples (rule 10): which school endpoint notified which SWV endpoint under
# which koppelsleutel, kept only as a keyed hash (rule 7); feedback_at once the SWV's
# feedback went to the school, which it does once.
swv_links = Table(
    "swv_links",
    metadata,
    Column("koppelsleutel_hmac", String(64), primary_key=True),
    Column("school_brin", String(4), nullable=False),
    Column("school_routeringskenmerk", String(20), nullable=False),
    Column("swv_brin", String(4), nullable=False),
    Column("swv_routeringskenmerk", String(20), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("feedback_at", UtcDateTime, nullable=True),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("bucket", String(80), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("hits", Integer, nullable=False),
)

# The audit log (append-only, hash-chained): one row per exchange and per administrative
# action. Metadata only: never a payload, a zoeksleutel or a pupil number.
audit_records = Table(
    "audit_records",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("type", String(32), nullable=False),
    Column("transaction_id", String(36), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False, index=True),
    Column("result", String(40), nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("request_id", String(36), nullable=True),
    Column("caller_serial", String(64), nullable=True),
    Column("subject", String(64), nullable=True),
    Column("sessie_id", String(36), nullable=True, index=True),
    Column("doel_brin", String(4), nullable=True),
    Column("doel_routeringskenmerk", String(20), nullable=True, index=True),
    Column("bron_brin", String(4), nullable=True),
    Column("bron_routeringskenmerk", String(20), nullable=True, index=True),
    Column("upstream_status", Integer, nullable=True),
    Column("request_in", UtcDateTime, nullable=True),
    Column("forwarded_at", UtcDateTime, nullable=True),
    Column("response_in", UtcDateTime, nullable=True),
    Column("response_out", UtcDateTime, nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Two records per relayed exchange: "started" before a byte is forwarded, "final" after.
    Column("phase", String(8), nullable=False, server_default="final"),
    Column("key_id", String(16), nullable=True),
    Column("node_id", String(36), nullable=True),
    UniqueConstraint("transaction_id", "phase", name="uq_audit_records_transaction_id"),
)

# The chain's head: one row, locked by every append, so concurrent writers (workers, nodes)
# take turns and the chain can neither fork nor gap; also what lets `audit verify` notice
# that the newest records were deleted.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    # Touched by every fail-closed probe: a write that really changes a page, so the probe
    # fails exactly when a record could not be written (SQLite skips no-op updates).
    Column("probed_at", UtcDateTime, nullable=True),
    # The key that must sign the next record: a node or CLI with another key writes nothing.
    Column("key_id", String(16), nullable=True),
)

# Started exchanges without their final record yet: in flight, or orphaned by a node that
# died. Written and cleared in the same transactions as the records themselves.
audit_open = Table(
    "audit_open",
    metadata,
    Column("transaction_id", String(36), primary_key=True),
    Column("node_id", String(36), nullable=False, index=True),
    Column("record_id", BigInteger, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
)

# One row per running node (process), its heartbeat kept current: an open exchange of a node
# whose heartbeat stopped is an orphan that any other node closes.
nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(36), primary_key=True),
    Column("hostname", String(255), nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)

# The CA's signed CRLs, newest last: published by the certificate admin's commands (nodes hold
# no CA key), served by every node at GET /v1/crl.
crls = Table(
    "crls",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("published_at", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
)
