"""the audit log's guard: no TRUNCATE (PostgreSQL), and only the redactable payload changes

0005's guard let an UPDATE change who acted (actor_name, actor_role), the task and the
subject, and on PostgreSQL a TRUNCATE emptied the table (after which the hash chains of
nothing verify). Only ``before``, ``after`` and ``redacted`` may change now (a redaction).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FIXED = "id, chain, seq, at, action, actor_id, actor_name, actor_role, task, subject, prev_hash, hash, digest"
OLD_FIXED = "id, chain, seq, at, action, actor_id, prev_hash, hash, digest"

PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_log_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    IF ({new}) IS DISTINCT FROM ({old}) THEN
        RAISE EXCEPTION 'audit_log rows cannot be changed (only redacted)';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def _pg_guard(columns: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    return PG_GUARD.format(
        new=", ".join(f"NEW.{c}" for c in names), old=", ".join(f"OLD.{c}" for c in names)
    )


def _sqlite_update_guard(columns: str) -> str:
    return (
        f"CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF {columns} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log rows cannot be changed (only redacted)'); END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_guard(FIXED))
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard()"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute(_sqlite_update_guard(FIXED))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute(_pg_guard(OLD_FIXED))
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute(_sqlite_update_guard(OLD_FIXED))
