"""exchanges: one metadata row per relayed dossier or notification

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("sessie_id", sa.String(length=36), nullable=True),
        sa.Column("doel_brin", sa.String(length=4), nullable=True),
        sa.Column("doel_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("bron_brin", sa.String(length=4), nullable=True),
        sa.Column("bron_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("result", sa.String(length=40), nullable=False),
        sa.Column("upstream_status", sa.Integer(), nullable=True),
        sa.Column("caller_serial", sa.String(length=64), nullable=False),
        sa.Column("request_in", UtcDateTime(), nullable=False),
        sa.Column("forwarded_at", UtcDateTime(), nullable=True),
        sa.Column("response_in", UtcDateTime(), nullable=True),
        sa.Column("response_out", UtcDateTime(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchanges")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_exchanges_transaction_id")),
    )
    with op.batch_alter_table("exchanges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exchanges_sessie_id"), ["sessie_id"])
        batch_op.create_index(
            batch_op.f("ix_exchanges_doel_routeringskenmerk"), ["doel_routeringskenmerk"]
        )
        batch_op.create_index(
            batch_op.f("ix_exchanges_bron_routeringskenmerk"), ["bron_routeringskenmerk"]
        )


def downgrade() -> None:
    op.drop_table("exchanges")
