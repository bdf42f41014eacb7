"""certified automation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:20:17.063835
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("curve_point", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.FLOAT(), nullable=True)

    with op.batch_alter_table("task", schema=None) as batch_op:
        # tasks made before certified automation keep the fixed threshold they were created with
        batch_op.add_column(
            sa.Column(
                "threshold_policy",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="fixed",
            )
        )
        batch_op.add_column(
            sa.Column("mode_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("threshold_in_force", sa.Float(), nullable=True))

    with op.batch_alter_table("task_history", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.FLOAT(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("task_history", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.FLOAT(), nullable=False)

    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("threshold_in_force")
        batch_op.drop_column("mode_reason")
        batch_op.drop_column("threshold_policy")

    with op.batch_alter_table("curve_point", schema=None) as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.FLOAT(), nullable=False)
