"""Release 2, contract: drop legacy_code once no release 1 pod runs. The contract branch's own root,
depending on the expand revision it finishes.

Revision ID: c2
"""

import sqlalchemy as sa
from alembic import op

revision = "c2"
down_revision = None
branch_labels = ("contract",)
depends_on = ("e2",)


def upgrade() -> None:
    op.drop_column("accounts", "legacy_code")


def downgrade() -> None:
    op.add_column("accounts", sa.Column("legacy_code", sa.String(20), nullable=True))
