"""train metrics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:17:13.903617
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pb_train_metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=True),
        sa.Column("grad_norm", sa.Float(), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("step_time_s", sa.Float(), nullable=True),
        sa.Column("peak_bytes", sa.BigInteger(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("bits_per_byte", sa.Float(), nullable=True),
        sa.Column("perplexity", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pb_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pb_train_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pb_train_metrics_run_id"), ["run_id"], unique=False)
        batch_op.create_index("ix_pb_train_metrics_run_kind_step", ["run_id", "kind", "step"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("pb_train_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_pb_train_metrics_run_kind_step")
        batch_op.drop_index(batch_op.f("ix_pb_train_metrics_run_id"))

    op.drop_table("pb_train_metrics")
