"""each webhook has a secret of its own: a random salt from which the server derives it

Revision ID: 0013
Revises: 0012
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_salt", sa.String(length=64), nullable=True))
    hooks = sa.table("task_webhook", sa.column("task_id"), sa.column("secret_salt"))
    connection = op.get_bind()
    for (task_id,) in connection.execute(sa.select(hooks.c.task_id)).all():
        connection.execute(
            hooks.update()
            .where(hooks.c.task_id == task_id)
            .values(secret_salt=secrets.token_hex(16))
        )


def downgrade() -> None:
    with op.batch_alter_table("task_webhook", schema=None) as batch_op:
        batch_op.drop_column("secret_salt")
