"""each model snapshot records the label ranges the rollbacks of its lineage left out, so a
rebuild of the model from the label log (after an erasure) leaves them out too

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_snapshot", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skipped_labels", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("model_snapshot", schema=None) as batch_op:
        batch_op.drop_column("skipped_labels")
