"""one driver per batch: a lease on the batch, and a cancel request

`driver` names the process that holds the batch (host:pid), `lease_until` (seconds since the epoch) when
its lease runs out unless its heartbeat renews it; `cancel_requested` is set by `phasebench cancel`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN: a batch-mode copy of pb_batches would have to drop a table pb_runs refers to
    op.add_column("pb_batches", sa.Column("driver", sa.String(length=255), nullable=True))
    op.add_column("pb_batches", sa.Column("lease_until", sa.Float(), nullable=True))
    op.add_column("pb_batches", sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("pb_batches", "cancel_requested")
    op.drop_column("pb_batches", "lease_until")
    op.drop_column("pb_batches", "driver")
