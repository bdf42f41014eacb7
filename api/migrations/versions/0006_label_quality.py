"""label quality: overlap, second opinions, gold cases, reviewer leads

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 21:50:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


TASK_COLUMNS = [
    ("labels_per_case", sa.Integer(), "1"),
    ("second_opinion_confidence", sa.Float(), "0.98"),
    ("second_opinion_agreement", sa.Float(), "0.8"),
    ("second_opinion_share", sa.Float(), "0.0"),
    ("gold_rate", sa.Float(), "0"),
    ("n_second_opinions", sa.Integer(), "0"),
    ("n_escalated", sa.Integer(), "0"),
]
CASE_COLUMNS = [
    ("opinions", sa.Integer(), "0"),
    ("second_opinion", sa.Boolean(), sa.false()),
    ("escalated", sa.Boolean(), sa.false()),
]


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lead", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("task", schema=None) as batch_op:
        for name, type_, default in TASK_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    with op.batch_alter_table("case", schema=None) as batch_op:
        for name, type_, default in CASE_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    op.create_table(
        "opinion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("lease_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("final_label", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("agrees", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "key_id", name="uq_opinion_case_key"),
    )
    with op.batch_alter_table("opinion", schema=None) as batch_op:
        batch_op.create_index("ix_opinion_task", ["task_id", "id"], unique=False)
        batch_op.create_index("ix_opinion_key", ["key_id", "id"], unique=False)
    op.create_table(
        "gold_case",
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"]),
        sa.PrimaryKeyConstraint("case_id"),
    )
    with op.batch_alter_table("gold_case", schema=None) as batch_op:
        batch_op.create_index("ix_gold_case_task", ["task_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gold_case", schema=None) as batch_op:
        batch_op.drop_index("ix_gold_case_task")
    op.drop_table("gold_case")
    with op.batch_alter_table("opinion", schema=None) as batch_op:
        batch_op.drop_index("ix_opinion_key")
        batch_op.drop_index("ix_opinion_task")
    op.drop_table("opinion")
    with op.batch_alter_table("case", schema=None) as batch_op:
        for name, _, _ in reversed(CASE_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("task", schema=None) as batch_op:
        for name, _, _ in reversed(TASK_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("lead")
