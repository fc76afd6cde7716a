"""audit log: hash-chained audit_records and their head, replacing exchanges

Revision ID: 0003
Revises: 0002

The exchanges table of 0002 held unchained relay records; the audit log supersedes it. Its
rows cannot be chained here (that needs the server secret), so they are not carried over.
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("result", sa.String(length=40), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("caller_serial", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("sessie_id", sa.String(length=36), nullable=True),
        sa.Column("doel_brin", sa.String(length=4), nullable=True),
        sa.Column("doel_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("bron_brin", sa.String(length=4), nullable=True),
        sa.Column("bron_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("upstream_status", sa.Integer(), nullable=True),
        sa.Column("request_in", UtcDateTime(), nullable=True),
        sa.Column("forwarded_at", UtcDateTime(), nullable=True),
        sa.Column("response_in", UtcDateTime(), nullable=True),
        sa.Column("response_out", UtcDateTime(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_audit_records_transaction_id")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        for column in (
            "recorded_at",
            "sessie_id",
            "doel_routeringskenmerk",
            "bron_routeringskenmerk",
        ):
            batch_op.create_index(batch_op.f(f"ix_audit_records_{column}"), [column])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("probed_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH, "count": 0}])
    op.drop_table("exchanges")


def downgrade() -> None:
    raise NotImplementedError("the audit log is append-only; restore a backup instead")
