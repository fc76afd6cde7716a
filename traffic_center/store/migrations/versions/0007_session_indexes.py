"""sessions: two indexes that no query reads, dropped (issue 14)

Revision ID: 0007
Revises: 0006

Every session written kept five B-trees current on SQLite (five WAL pages per commit), two
of them for nothing: no statement looks sessions up by bron_brin, and the unique
constraint on (doel_routeringskenmerk, idempotency_key) already serves a lookup by
doel_routeringskenmerk as its leading column, on SQLite and PostgreSQL alike.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_doel_routeringskenmerk")
        batch_op.drop_index(batch_op.f("ix_sessions_bron_brin"))


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_bron_brin"), ["bron_brin"], unique=False)
        batch_op.create_index(
            "ix_sessions_doel_routeringskenmerk", ["doel_routeringskenmerk"], unique=False
        )
