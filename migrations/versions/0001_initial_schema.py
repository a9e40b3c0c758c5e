"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:28:39.767859
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pb_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pb_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pb_batches_name"), ["name"], unique=False)

    op.create_table(
        "pb_environments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env_hash", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("gpu_name", sa.String(length=255), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=64), nullable=True),
        sa.Column("cuda", sa.String(length=32), nullable=True),
        sa.Column("torch", sa.String(length=64), nullable=False),
        sa.Column("triton", sa.String(length=64), nullable=True),
        sa.Column("python", sa.String(length=64), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("env_hash"),
    )
    op.create_table(
        "pb_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reused_run_id", sa.String(length=32), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("study_name", sa.String(length=200), nullable=True),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["pb_batches.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pb_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pb_runs_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index("ix_pb_runs_batch_index", ["batch_id", "index"], unique=True)
        batch_op.create_index(batch_op.f("ix_pb_runs_config_hash"), ["config_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_pb_runs_model"), ["model"], unique=False)
        batch_op.create_index(batch_op.f("ix_pb_runs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_pb_runs_study_name"), ["study_name"], unique=False)

    op.create_table(
        "pb_results",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", sa.BigInteger(), nullable=True),
        sa.Column("weights_bytes", sa.BigInteger(), nullable=True),
        sa.Column("static_bytes", sa.BigInteger(), nullable=True),
        sa.Column("peak_bytes", sa.BigInteger(), nullable=True),
        sa.Column("activation_bytes", sa.BigInteger(), nullable=True),
        sa.Column("reserved_bytes", sa.BigInteger(), nullable=True),
        sa.Column("device_used_bytes", sa.BigInteger(), nullable=True),
        sa.Column("alloc_retries", sa.Integer(), nullable=True),
        sa.Column("num_ooms", sa.Integer(), nullable=True),
        sa.Column("logits_bytes", sa.BigInteger(), nullable=True),
        sa.Column("saved_tensor_bytes", sa.BigInteger(), nullable=True),
        sa.Column("peak_rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("step_time_median_s", sa.Float(), nullable=True),
        sa.Column("step_time_iqr_s", sa.Float(), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("flops_per_token", sa.Float(), nullable=True),
        sa.Column("mfu", sa.Float(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["pb_environments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pb_runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("pb_results")
    with op.batch_alter_table("pb_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pb_runs_study_name"))
        batch_op.drop_index(batch_op.f("ix_pb_runs_status"))
        batch_op.drop_index(batch_op.f("ix_pb_runs_model"))
        batch_op.drop_index(batch_op.f("ix_pb_runs_config_hash"))
        batch_op.drop_index("ix_pb_runs_batch_index")
        batch_op.drop_index(batch_op.f("ix_pb_runs_batch_id"))

    op.drop_table("pb_runs")
    op.drop_table("pb_environments")
    with op.batch_alter_table("pb_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pb_batches_name"))

    op.drop_table("pb_batches")
