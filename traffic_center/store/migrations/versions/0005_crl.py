"""published CRLs: the CA's signed revocation lists, served by every node at GET /v1/crl

Revision ID: 0005
Revises: 0004

Nodes never hold the CA key, so they cannot sign a CRL themselves: the certificate admin's
commands (revoke, crl) sign one and publish it here, and every node serves the newest.
"""

import sqlalchemy as sa
from alembic import op

from traffic_center.store.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crls",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("published_at", UtcDateTime(), nullable=False),
        sa.Column("next_update", UtcDateTime(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crls")),
    )


def downgrade() -> None:
    op.drop_table("crls")
