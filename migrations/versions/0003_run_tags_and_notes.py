"""run tags and notes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pb_run_tags",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pb_runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "tag"),
    )
    with op.batch_alter_table("pb_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pb_runs", schema=None) as batch_op:
        batch_op.drop_column("note")

    op.drop_table("pb_run_tags")
