"""a task records up to which label its migrations are in its history

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("history_label_id", sa.Integer(), nullable=False, server_default="0")
        )
    # the history of every label logged so far was recorded when it happened
    op.execute(
        "UPDATE task SET history_label_id = "
        "COALESCE((SELECT max(label.id) FROM label WHERE label.task_id = task.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("history_label_id")
