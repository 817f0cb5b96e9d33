"""claim order index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 22:40:00.000000

The claim takes pending tasks by priority (highest first), then age. The old index listed priority ascending,
so both engines sorted every pending task of the pool on each claim; this one matches the order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_claim")
        batch_op.create_index(
            "ix_tasks_claim_order",
            ["status", "pool", sa.literal_column("priority DESC"), "created_at", "task_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_claim_order")
        batch_op.create_index("ix_tasks_claim", ["status", "pool", "priority", "created_at"], unique=False)
