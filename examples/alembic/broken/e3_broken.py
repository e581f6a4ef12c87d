"""A revision that fails: the table it updates does not exist. Only `alembic -n broken` sees it (see
alembic.ini): the docs' failure walk-through and the tests run it as a release's expand.

Revision ID: e3
"""

import sqlalchemy as sa
from alembic import op

revision = "e3"
down_revision = "e2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("nickname", sa.Text))
    op.execute("UPDATE account_nicknames SET nickname = name")


def downgrade() -> None:
    op.drop_column("accounts", "nickname")
