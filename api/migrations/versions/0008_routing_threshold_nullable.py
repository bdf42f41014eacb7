"""a case routed while nothing was automated records no threshold (was 1.0)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("routing", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE routing SET threshold = 1.0 WHERE threshold IS NULL")
    with op.batch_alter_table("routing", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.Float(), nullable=False)
