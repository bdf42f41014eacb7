"""a snapshot says whether it is kept (a restart point to roll back to) or only published
for the other processes, so those can be cleared after a restart and left out of listings

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_snapshot", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kept", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("model_snapshot", schema=None) as batch_op:
        batch_op.drop_column("kept")
