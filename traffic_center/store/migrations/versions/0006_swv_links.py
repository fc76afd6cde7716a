"""the SWV flow: swv_links, the triples (school endpoint, koppelsleutel, SWV endpoint)

Revision ID: 0006
Revises: 0005

A school's notification to its samenwerkingsverband issues a koppelsleutel; the triple is
recorded so only that SWV may open an swv-dossier session with it, and give feedback once.
The koppelsleutel is kept only as a keyed hash (rule 7 in docs/rules.md).
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "swv_links",
        sa.Column("koppelsleutel_hmac", sa.String(length=64), nullable=False),
        sa.Column("school_brin", sa.String(length=4), nullable=False),
        sa.Column("school_routeringskenmerk", sa.String(length=20), nullable=False),
        sa.Column("swv_brin", sa.String(length=4), nullable=False),
        sa.Column("swv_routeringskenmerk", sa.String(length=20), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("feedback_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("koppelsleutel_hmac", name=op.f("pk_swv_links")),
    )
    op.create_index(
        op.f("ix_swv_links_swv_routeringskenmerk"), "swv_links", ["swv_routeringskenmerk"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_swv_links_swv_routeringskenmerk"), table_name="swv_links")
    op.drop_table("swv_links")
