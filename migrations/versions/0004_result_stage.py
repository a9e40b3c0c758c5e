"""result column phase renamed stage

The column holds the stage a run reached (build, forward, backward, step, done), not a model's Phase.
SQLite renames it by copying the table (batch mode); the stored values are kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pb_results", schema=None) as batch_op:
        batch_op.alter_column(
            "phase", new_column_name="stage", existing_type=sa.String(length=16), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("pb_results", schema=None) as batch_op:
        batch_op.alter_column(
            "stage", new_column_name="phase", existing_type=sa.String(length=16), existing_nullable=True
        )
