"""security and governance: audit trail, key rotation and scope

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 21:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The audit log is append-only: the database refuses to delete a row or to change anything
# but the redactable payload (before/after, redacted). A superuser can still get round
# this (drop the trigger, replica mode); the hash chain is what proves nothing was changed.
PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_log_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    IF NEW.id <> OLD.id OR NEW.chain <> OLD.chain OR NEW.seq <> OLD.seq OR NEW.at <> OLD.at
       OR NEW.action <> OLD.action OR NEW.actor_id <> OLD.actor_id
       OR NEW.prev_hash <> OLD.prev_hash OR NEW.hash <> OLD.hash
       OR NEW.digest <> OLD.digest THEN
        RAISE EXCEPTION 'audit_log rows cannot be changed (only redacted)';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""
SQLITE_GUARDS = [
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF id, chain, seq, at, action,
       actor_id, prev_hash, hash, digest ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log rows cannot be changed (only redacted)'); END""",
]


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chain', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('actor_name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('actor_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('task', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('before', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('after', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('redacted', sa.Boolean(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_chain_seq', ['chain', 'seq'], unique=True)
        batch_op.create_index('ix_audit_task_id', ['task', 'id'], unique=False)
        batch_op.create_index('ix_audit_subject', ['subject'], unique=False)
        batch_op.create_index('ix_audit_action_id', ['action', 'id'], unique=False)

    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tasks', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('rotated_to', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))

    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.Float(), nullable=True))

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_GUARD)
        op.execute(
            "CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_guard()"
        )
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_log_guard ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_column('rotated_to')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('tasks')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_action_id')
        batch_op.drop_index('ix_audit_subject')
        batch_op.drop_index('ix_audit_task_id')
        batch_op.drop_index('ix_audit_chain_seq')
    op.drop_table('audit_log')
