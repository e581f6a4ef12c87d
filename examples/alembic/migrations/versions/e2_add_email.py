"""Release 2, expand: add email; legacy_code becomes nullable, since release 2 no longer writes it.

Revision ID: e2
"""

import sqlalchemy as sa
from alembic import op

revision = "e2"
down_revision = "e1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("email", sa.String(320), nullable=True))
    op.alter_column("accounts", "legacy_code", nullable=True)


def downgrade() -> None:
    op.alter_column("accounts", "legacy_code", nullable=False)
    op.drop_column("accounts", "email")
