"""an audit records the automated cases of its confidence bin it stands for

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("routing", "label"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("audit_weight", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("label", "routing"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("audit_weight")
