"""Release 1: accounts with a legacy_code.

Revision ID: e1
"""

import sqlalchemy as sa
from alembic import op

revision = "e1"
down_revision = None
branch_labels = ("expand",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("legacy_code", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("accounts")
