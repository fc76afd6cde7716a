"""two-phase audit records, key ids, nodes: started/final records, the open index, heartbeats

Revision ID: 0004
Revises: 0003

Relays and notifications are recorded twice (started, final) under one transaction id, so the
unique key becomes (transaction_id, phase). Each record names its signing key and its node.
``audit_open`` indexes started exchanges without a final record; ``nodes`` holds heartbeats,
so any node can tell an exchange in flight from one whose node died.
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phase", sa.String(length=8), nullable=False, server_default="final")
        )
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("node_id", sa.String(length=36), nullable=True))
        batch_op.drop_constraint("uq_audit_records_transaction_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_audit_records_transaction_id", ["transaction_id", "phase"]
        )
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
    op.create_table(
        "audit_open",
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_audit_open")),
    )
    op.create_index(op.f("ix_audit_open_node_id"), "audit_open", ["node_id"])
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
    )


def downgrade() -> None:
    raise NotImplementedError("the audit log is append-only; restore a backup instead")
