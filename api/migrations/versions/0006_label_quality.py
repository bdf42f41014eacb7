"""label quality: overlap, second opinions, gold cases, reviewer leads

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 21:50:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
