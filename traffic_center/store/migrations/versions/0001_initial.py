"""initial schema: certificates, registry, sessions, rate limits

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("not_after", UtcDateTime(), nullable=False),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_certificates")),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificates_routeringskenmerk"), ["routeringskenmerk"], unique=False
        )

    op.create_table(
        "rate_limits",
        sa.Column("bucket", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_rate_limits")),
    )
    op.create_table(
        "schools",
        sa.Column("brin", sa.String(length=4), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sector", sa.String(length=8), nullable=False),
        sa.Column("board", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("brin", name=op.f("pk_schools")),
    )
    op.create_table(
        "sessions",
        sa.Column("sessie_id", sa.String(length=36), nullable=False),
        sa.Column("doel_brin", sa.String(length=4), nullable=False),
        sa.Column("doel_routeringskenmerk", sa.String(length=20), nullable=False),
        sa.Column("doel_sector", sa.String(length=8), nullable=False),
        sa.Column("bron_brin", sa.String(length=4), nullable=False),
        sa.Column("bron_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("overdrachtsoort", sa.String(length=32), nullable=False),
        sa.Column("search_key_hmac", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("result", sa.String(length=40), nullable=True),
        sa.Column("result_routeringskenmerk", sa.String(length=20), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("sessie_id", name=op.f("pk_sessions")),
        sa.UniqueConstraint(
            "doel_routeringskenmerk", "idempotency_key", name="uq_sessions_idempotency"
        ),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_bron_brin"), ["bron_brin"], unique=False)
        batch_op.create_index(
            "ix_sessions_doel_routeringskenmerk", ["doel_routeringskenmerk"], unique=False
        )

    op.create_table(
        "endpoints",
        sa.Column("routeringskenmerk", sa.String(length=20), nullable=False),
        sa.Column("brin", sa.String(length=4), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["brin"], ["schools.brin"], name=op.f("fk_endpoints_brin")),
        sa.PrimaryKeyConstraint("routeringskenmerk", name=op.f("pk_endpoints")),
    )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_endpoints_brin"), ["brin"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_endpoints_brin"))

    op.drop_table("endpoints")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_doel_routeringskenmerk")
        batch_op.drop_index(batch_op.f("ix_sessions_bron_brin"))

    op.drop_table("sessions")
    op.drop_table("schools")
    op.drop_table("rate_limits")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_routeringskenmerk"))

    op.drop_table("certificates")
